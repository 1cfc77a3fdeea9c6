//! Execution: rows stream from the probe side of each join straight into the consumer
//! (grouping, a bounded sort buffer, or the output with early stop at LIMIT), so a cartesian
//! product is never materialised; only build sides are held, under a size cap, and every loop
//! ticks the statement deadline.

use std::collections::HashMap;
use std::hash::Hasher;

use crate::ast::JoinKind;
use crate::eval::to_num;
use crate::eval::{BExpr, EResult, Env, NONE, Row, err};
use crate::plan::{AggKind, AggSpec, Conj, Node, OrderKey, Plan};
use crate::value::{Fx, FxBuild, Num, Value, equal, hash_value, same, total_cmp};

/// Largest build side of a join, in row ids (rows times the tables on that side): 64 MiB.
const MAX_BUILD_IDS: usize = 16 << 20;
/// Most groups one statement may form, and most key and aggregate values they may hold together.
const MAX_GROUPS: usize = 2_000_000;
const MAX_GROUP_VALUES: usize = 8_000_000;
/// Most rows a sort may hold (OFFSET + LIMIT beyond this is refused).
const MAX_SORT_ROWS: usize = 2_000_000;
/// Bytes one result (values and their strings) may hold, also while it is being sorted.
const MAX_RESULT_BYTES: usize = 64 << 20;

type Sink<'s> = dyn FnMut(&mut [u32]) -> EResult<bool> + 's;

struct Exec<'p, 'e> {
    plan: &'p Plan,
    env: &'p Env<'e>,
}

fn pass(conds: &[Conj], env: &Env<'_>, row: &Row<'_, '_>) -> EResult<bool> {
    for c in conds {
        if !c.e.test(env, row)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn key_hash(keys: &[BExpr], env: &Env<'_>, row: &Row<'_, '_>) -> EResult<Option<u64>> {
    let mut h = Fx::default();
    for k in keys {
        let v = k.eval(env, row)?;
        if v.is_null() {
            return Ok(None);
        }
        hash_value(&v, &mut h);
    }
    Ok(Some(h.finish()))
}

impl Exec<'_, '_> {
    fn row<'i>(&self, ids: &'i [u32]) -> Row<'_, 'i> {
        Row::Tables {
            tables: &self.plan.tables,
            ids,
        }
    }

    /// Streams the rows of `node` into `sink`; `false` from the sink stops everything.
    fn run(&self, node: &Node, buf: &mut [u32], sink: &mut Sink<'_>) -> EResult<bool> {
        match node {
            Node::Scan { slot, filters } => {
                let n = self.plan.tables.get(*slot).map_or(0, |t| t.len());
                let mut go = true;
                for r in 0..n {
                    self.env.dl.tick()?;
                    if let Some(x) = buf.get_mut(*slot) {
                        *x = r as u32;
                    }
                    if pass(filters, self.env, &self.row(buf))? && !sink(buf)? {
                        go = false;
                        break;
                    }
                }
                if let Some(x) = buf.get_mut(*slot) {
                    *x = NONE;
                }
                Ok(go)
            }
            Node::Join {
                kind,
                left,
                right,
                lslots,
                rslots,
                lkeys,
                rkeys,
                residual,
                post,
                ..
            } => {
                // Build one side (the right one, or the left one of a RIGHT join), stream the other.
                let (build_node, probe_node, bslots, bkeys, pkeys) = match kind {
                    JoinKind::Right => (left, right, lslots, lkeys, rkeys),
                    _ => (right, left, rslots, rkeys, lkeys),
                };
                let outer = *kind != JoinKind::Inner;
                let w = bslots.len();
                let mut built: Vec<u32> = Vec::new();
                let mut bbuf = vec![NONE; buf.len()];
                self.run(build_node, &mut bbuf, &mut |b| {
                    self.env.dl.tick()?;
                    if built.len() >= MAX_BUILD_IDS {
                        return err(format!(
                            "Intermediate join result of more than {} rows; add a join condition or a filter",
                            MAX_BUILD_IDS / w.max(1)
                        ));
                    }
                    built.extend(bslots.iter().map(|s| b.get(*s).copied().unwrap_or(NONE)));
                    Ok(true)
                })?;
                let nb = built.len() / w.max(1);
                let set = |b: &mut [u32], i: usize| {
                    for (k, s) in bslots.iter().enumerate() {
                        if let Some(x) = b.get_mut(*s) {
                            *x = built.get(i * w + k).copied().unwrap_or(NONE);
                        }
                    }
                };
                // Hash table: head of each chain, chained in build order.
                let mut head: HashMap<u64, u32, FxBuild> = HashMap::default();
                let mut next: Vec<u32> = Vec::new();
                if !bkeys.is_empty() {
                    next = vec![NONE; nb];
                    head.reserve(nb);
                    for i in (0..nb).rev() {
                        self.env.dl.tick()?;
                        set(&mut bbuf, i);
                        if let Some(h) = key_hash(bkeys, self.env, &self.row(&bbuf))? {
                            let prev = head.insert(h, i as u32).unwrap_or(NONE);
                            if let Some(x) = next.get_mut(i) {
                                *x = prev;
                            }
                        }
                    }
                }
                let env = self.env;
                let hashed = !bkeys.is_empty();
                self.run(probe_node, buf, &mut |b| {
                    let mut matched = false;
                    let mut cand = if hashed {
                        match key_hash(pkeys, env, &self.row(b))? {
                            Some(h) => head.get(&h).copied().unwrap_or(NONE),
                            None => NONE,
                        }
                    } else if nb > 0 {
                        0
                    } else {
                        NONE
                    };
                    while cand != NONE {
                        env.dl.tick()?;
                        let i = cand as usize;
                        cand = if hashed {
                            next.get(i).copied().unwrap_or(NONE)
                        } else if i + 1 < nb {
                            (i + 1) as u32
                        } else {
                            NONE
                        };
                        set(b, i);
                        let row = self.row(b);
                        let mut ok = true;
                        for (p, q) in pkeys.iter().zip(bkeys.iter()) {
                            if equal(&*p.eval(env, &row)?, &*q.eval(env, &row)?) != Some(true) {
                                ok = false;
                                break;
                            }
                        }
                        if !ok || !pass(residual, env, &row)? {
                            continue;
                        }
                        matched = true;
                        if pass(post, env, &row)? && !sink(b)? {
                            return Ok(false);
                        }
                    }
                    if outer && !matched {
                        for s in bslots {
                            if let Some(x) = b.get_mut(*s) {
                                *x = NONE;
                            }
                        }
                        if pass(post, env, &self.row(b))? && !sink(b)? {
                            return Ok(false);
                        }
                    }
                    Ok(true)
                })
            }
        }
    }

    fn stream(&self, sink: &mut Sink<'_>) -> EResult<()> {
        let mut buf = vec![NONE; self.plan.tables.len()];
        match &self.plan.root {
            Some(n) => {
                self.run(n, &mut buf, sink)?;
            }
            None => {
                if pass(&self.plan.filter, self.env, &self.row(&buf))? {
                    sink(&mut buf)?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
enum AggState {
    Count(i64),
    Sum {
        int: i64,
        float: f64,
        is_float: bool,
        any: bool,
    },
    Avg {
        sum: f64,
        n: i64,
    },
    Pick(Value),
}

impl AggState {
    fn new(k: AggKind) -> Self {
        match k {
            AggKind::CountStar | AggKind::Count => AggState::Count(0),
            AggKind::Sum => AggState::Sum {
                int: 0,
                float: 0.0,
                is_float: false,
                any: false,
            },
            AggKind::Avg => AggState::Avg { sum: 0.0, n: 0 },
            AggKind::Min | AggKind::Max => AggState::Pick(Value::Null),
        }
    }

    fn update(&mut self, spec: &AggSpec, v: &Value) -> EResult<()> {
        if spec.kind == AggKind::CountStar {
            if let AggState::Count(n) = self {
                *n = n.saturating_add(1);
            }
            return Ok(());
        }
        if v.is_null() {
            return Ok(());
        }
        match self {
            AggState::Count(n) => *n = n.saturating_add(1),
            AggState::Sum {
                int,
                float,
                is_float,
                any,
            } => {
                *any = true;
                match to_num(v)? {
                    Some(Num::Int(i)) if !*is_float => match int.checked_add(i) {
                        Some(s) => *int = s,
                        None => return err("Integer overflow"),
                    },
                    Some(n) => {
                        if !*is_float {
                            *is_float = true;
                            *float = *int as f64;
                        }
                        *float += n.f();
                    }
                    None => {}
                }
            }
            AggState::Avg { sum, n } => {
                if let Some(x) = to_num(v)? {
                    *sum += x.f();
                    *n += 1;
                }
            }
            AggState::Pick(cur) => {
                let better = cur.is_null()
                    || match spec.kind {
                        AggKind::Min => total_cmp(v, cur).is_lt(),
                        _ => total_cmp(v, cur).is_gt(),
                    };
                if better {
                    *cur = v.clone();
                }
            }
        }
        Ok(())
    }

    fn finish(&self) -> Value {
        match self {
            AggState::Count(n) => Value::Int(*n),
            AggState::Sum { any: false, .. } => Value::Null,
            AggState::Sum {
                float,
                is_float: true,
                ..
            } => Value::Float(*float),
            AggState::Sum { int, .. } => Value::Int(*int),
            AggState::Avg { n: 0, .. } => Value::Null,
            AggState::Avg { sum, n } => Value::Float(*sum / *n as f64),
            AggState::Pick(v) => v.clone(),
        }
    }
}

fn size_of_row(r: &[Value]) -> usize {
    r.iter().fold(std::mem::size_of_val(r), |n, v| match v {
        Value::Str(s) => n.saturating_add(s.len()),
        _ => n,
    })
}

/// Collects output rows: keeps only what LIMIT and the row limit can return, sorting in bounded
/// batches when there is an ORDER BY.
struct Collector<'a> {
    sorted: bool,
    desc: Vec<bool>,
    skip: u64,
    keep: usize,
    rows: Vec<(Vec<Value>, Vec<Value>)>,
    /// Sort keys of the last row that can still be returned, once the buffer is full: a row
    /// that does not sort before it is dropped without being projected.
    threshold: Option<Vec<Value>>,
    bytes: usize,
    seen: u64,
    env: &'a Env<'a>,
}

impl Collector<'_> {
    fn cmp(desc: &[bool], a: &[Value], b: &[Value]) -> std::cmp::Ordering {
        for ((x, y), d) in a.iter().zip(b).zip(desc) {
            let o = total_cmp(x, y);
            if o.is_ne() {
                return if *d { o.reverse() } else { o };
            }
        }
        std::cmp::Ordering::Equal
    }

    fn compact(&mut self) -> EResult<()> {
        let timed_out = std::cell::Cell::new(false);
        let dl = self.env.dl;
        let desc = &self.desc;
        self.rows.sort_by(|a, b| {
            if dl.tick().is_err() {
                timed_out.set(true);
            }
            Self::cmp(desc, &a.0, &b.0)
        });
        if timed_out.get() {
            return err(dl.message());
        }
        let limit = self.skip.saturating_add(self.keep as u64);
        if (self.rows.len() as u64) >= limit {
            self.rows.truncate(limit as usize);
            self.threshold = self.rows.last().map(|r| r.0.clone());
            self.bytes = self
                .rows
                .iter()
                .map(|(k, r)| size_of_row(k) + size_of_row(r))
                .sum();
        }
        Ok(())
    }

    fn rejects(&self, keys: &[Value]) -> bool {
        // Equal keys arriving later sort after the kept row (stable), so they are out too.
        self.threshold
            .as_ref()
            .is_some_and(|t| Self::cmp(&self.desc, keys, t).is_ge())
    }

    /// `false`: nothing more can be used.
    fn push(&mut self, keys: Vec<Value>, row: Vec<Value>) -> EResult<bool> {
        if !self.sorted {
            self.seen += 1;
            if self.seen <= self.skip {
                return Ok(true);
            }
        }
        self.bytes = self.bytes.saturating_add(size_of_row(&keys) + size_of_row(&row));
        if self.bytes > MAX_RESULT_BYTES {
            return err(format!("Result larger than {} MiB", MAX_RESULT_BYTES >> 20));
        }
        if self.sorted {
            self.rows.push((keys, row));
            let bound = self.skip.saturating_add(self.keep as u64);
            if bound > MAX_SORT_ROWS as u64 && self.rows.len() > MAX_SORT_ROWS {
                return err(format!("Sorting more than {MAX_SORT_ROWS} rows is not supported"));
            }
            if self.rows.len() as u64 >= bound.saturating_mul(2).max(4096) {
                self.compact()?;
            }
            return Ok(true);
        }
        self.rows.push((keys, row));
        Ok(self.rows.len() < self.keep)
    }

    fn finish(mut self) -> EResult<Vec<Vec<Value>>> {
        if self.sorted {
            self.compact()?;
            let skip = usize::try_from(self.skip).unwrap_or(usize::MAX);
            return Ok(self
                .rows
                .into_iter()
                .skip(skip)
                .take(self.keep)
                .map(|r| r.1)
                .collect());
        }
        Ok(self.rows.into_iter().map(|r| r.1).collect())
    }
}

/// Rows of the SELECT after LIMIT, at most `row_limit + 1` of them (the caller truncates).
pub(crate) fn execute(plan: &Plan, env: &Env<'_>, row_limit: usize) -> EResult<Vec<Vec<Value>>> {
    let ex = Exec { plan, env };
    let (skip, count) = plan.limit.unwrap_or((0, u64::MAX));
    let keep = usize::try_from(count.min((row_limit as u64).saturating_add(1))).unwrap_or(usize::MAX);
    let mut col = Collector {
        sorted: !plan.order.is_empty(),
        desc: plan.order.iter().map(|o| o.1).collect(),
        skip,
        keep,
        rows: Vec::new(),
        threshold: None,
        bytes: 0,
        seen: 0,
        env,
    };
    if keep == 0 {
        return Ok(Vec::new());
    }
    // Sort keys first: a row the sort buffer would drop is never projected.
    let mut keys: Vec<Value> = Vec::with_capacity(plan.order.len());
    let mut emit = |row: &Row<'_, '_>, col: &mut Collector<'_>| -> EResult<bool> {
        keys.clear();
        for (k, _) in &plan.order {
            let e = match k {
                OrderKey::Output(i) => plan.items.get(*i),
                OrderKey::Expr(e) => Some(e),
            };
            keys.push(match e {
                Some(e) => e.eval(env, row)?.into_owned(),
                None => Value::Null,
            });
        }
        if col.rejects(&keys) {
            return Ok(true);
        }
        let mut out = Vec::with_capacity(plan.items.len());
        for (i, e) in plan.items.iter().enumerate() {
            env.dl.tick()?;
            // An output that is also a sort key is evaluated once (RAND() must sort as shown).
            let pos = plan
                .order
                .iter()
                .position(|(k, _)| matches!(k, OrderKey::Output(j) if *j == i));
            out.push(match pos.and_then(|p| keys.get(p)) {
                Some(v) => v.clone(),
                None => e.eval(env, row)?.into_owned(),
            });
        }
        col.push(keys.clone(), out)
    };

    match &plan.grouping {
        None => {
            ex.stream(&mut |b| emit(&ex.row(b), &mut col))?;
        }
        Some(g) => {
            let nk = g.keys.len();
            let mut head: HashMap<u64, u32, FxBuild> = HashMap::default();
            let mut next: Vec<u32> = Vec::new();
            let mut keys: Vec<Value> = Vec::new();
            let mut states: Vec<AggState> = Vec::new();
            let mut scratch: Vec<Value> = Vec::with_capacity(nk);
            let mut ngroups = 0usize;
            let init: Vec<AggState> = g.aggs.iter().map(|a| AggState::new(a.kind)).collect();
            let na = init.len();
            ex.stream(&mut |b| {
                let row = ex.row(b);
                scratch.clear();
                let mut h = Fx::default();
                for k in &g.keys {
                    let v = k.eval(env, &row)?;
                    hash_value(&v, &mut h);
                    scratch.push(v.into_owned());
                }
                let h = h.finish();
                let mut gi = head.get(&h).copied().unwrap_or(NONE);
                while gi != NONE {
                    let start = gi as usize * nk;
                    let same_key = keys
                        .get(start..start + nk)
                        .is_some_and(|k| k.iter().zip(&scratch).all(|(a, b)| same(a, b)));
                    if same_key {
                        break;
                    }
                    gi = next.get(gi as usize).copied().unwrap_or(NONE);
                }
                if gi == NONE {
                    if ngroups >= MAX_GROUPS || keys.len() + states.len() > MAX_GROUP_VALUES {
                        return err(format!(
                            "More than {} groups",
                            ngroups.min(MAX_GROUP_VALUES / (nk + na).max(1))
                        ));
                    }
                    gi = ngroups as u32;
                    ngroups += 1;
                    keys.append(&mut scratch);
                    states.extend(init.iter().cloned());
                    next.push(head.insert(h, gi).unwrap_or(NONE));
                }
                let base = gi as usize * na;
                for (j, spec) in g.aggs.iter().enumerate() {
                    let v = spec.arg.eval(env, &row)?;
                    if let Some(st) = states.get_mut(base + j) {
                        st.update(spec, &v)?;
                    }
                }
                Ok(true)
            })?;
            if nk == 0 && ngroups == 0 {
                ngroups = 1;
                states.extend(init.iter().cloned());
            }
            let mut aggs = Vec::with_capacity(na);
            for gi in 0..ngroups {
                env.dl.tick()?;
                aggs.clear();
                aggs.extend(
                    states
                        .get(gi * na..(gi + 1) * na)
                        .unwrap_or(&[])
                        .iter()
                        .map(AggState::finish),
                );
                let gkeys = keys.get(gi * nk..(gi + 1) * nk).unwrap_or(&[]);
                let row = Row::Group {
                    keys: gkeys,
                    aggs: &aggs,
                };
                if let Some(h) = &g.having
                    && !h.test(env, &row)?
                {
                    continue;
                }
                if !emit(&row, &mut col)? {
                    break;
                }
            }
        }
    }
    col.finish()
}
