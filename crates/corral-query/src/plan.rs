//! Name resolution and planning: table slots, the join tree with WHERE/ON conjuncts pushed to the
//! lowest node that can apply them, equi-conditions turned into hash-join keys, and the grouped
//! or plain projection. Planning reads only schemas and row counts, never rows, so EXPLAIN is cheap.

use std::sync::Arc;

use crate::ast::*;
use crate::eval::{BExpr, EResult, LikeTok, Re, compile_like, compile_regex, err};
use crate::func::{self, F};
use crate::schema::{ColumnType, Database, Table};
use crate::value::Value;

pub(crate) struct Slot {
    pub alias: String,
    pub table: Arc<Table>,
}

/// A name visible in the FROM scope, in `*` order.
#[derive(Clone)]
struct Entry {
    name: &'static str,
    expr: BExpr,
    /// The slot the column belongs to; `None` for a `USING`/`NATURAL` join column, which stands
    /// for both sides.
    slot: Option<usize>,
}

#[derive(Clone)]
pub(crate) struct Conj {
    pub e: BExpr,
    pub mask: u64,
    pub text: String,
}

pub(crate) enum Node {
    Scan {
        slot: usize,
        filters: Vec<Conj>,
    },
    Join {
        kind: JoinKind,
        left: Box<Node>,
        right: Box<Node>,
        lslots: Vec<usize>,
        rslots: Vec<usize>,
        /// Hash-join keys: `lkeys[i]` (left side) equals `rkeys[i]` (right side).
        lkeys: Vec<BExpr>,
        rkeys: Vec<BExpr>,
        key_text: Vec<String>,
        /// Part of the match condition (outer joins keep unmatched rows).
        residual: Vec<Conj>,
        /// Applied to every output row of the join.
        post: Vec<Conj>,
    },
}

/// Join tree before conditions are placed.
enum Tree {
    Leaf(usize),
    Join {
        kind: JoinKind,
        left: Box<Tree>,
        right: Box<Tree>,
        on: Vec<Conj>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AggKind {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AggSpec {
    pub kind: AggKind,
    pub arg: BExpr,
}

pub(crate) struct Grouping {
    pub keys: Vec<BExpr>,
    pub aggs: Vec<AggSpec>,
    pub having: Option<BExpr>,
}

pub(crate) enum OrderKey {
    Output(usize),
    Expr(BExpr),
}

pub(crate) struct Plan {
    pub tables: Vec<Arc<Table>>,
    pub root: Option<Node>,
    /// WHERE of a SELECT without FROM.
    pub filter: Vec<Conj>,
    pub grouping: Option<Grouping>,
    pub columns: Vec<String>,
    pub items: Vec<BExpr>,
    pub order: Vec<(OrderKey, bool)>,
    pub limit: Option<(u64, u64)>,
    /// For EXPLAIN: the ORDER BY terms as written and each slot's (alias, table).
    pub order_text: Vec<String>,
    pub slot_names: Vec<(String, &'static str)>,
}

pub(crate) fn mask_of(slot: usize) -> u64 {
    1u64.checked_shl(slot as u32).unwrap_or(0)
}

fn split_and(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::Chain(first, rest) if rest.iter().all(|(op, _)| *op == BinOp::And) => {
            split_and(first, out);
            rest.iter().for_each(|(_, x)| split_and(x, out));
        }
        o => out.push(o.clone()),
    }
}

enum Mode<'g> {
    Row {
        ctx: &'static str,
    },
    Group {
        keys: &'g [BExpr],
        aggs: &'g mut Vec<AggSpec>,
    },
}

struct Binder<'a> {
    slots: &'a [Slot],
    entries: &'a [Entry],
    /// Slots a qualified name may reach (ON conditions see only their own join).
    allowed: u64,
    /// Output aliases usable by bare names (HAVING, ORDER BY in grouped queries).
    aliases: &'a [(String, Expr)],
}

fn group_error<T>(e: &Expr) -> EResult<T> {
    err(format!(
        "Column {e} must appear in GROUP BY or be used in an aggregate function"
    ))
}

impl Binder<'_> {
    fn column(&self, table: &Option<String>, name: &str) -> EResult<BExpr> {
        match table {
            Some(t) => {
                let Some(slot) = self.slots.iter().position(|s| s.alias.eq_ignore_ascii_case(t)) else {
                    return err(format!("Table {t} is not in FROM"));
                };
                if self.allowed & mask_of(slot) == 0 {
                    return err(format!("Table {t} is not visible here"));
                }
                let schema = self.slots.get(slot).map(|s| s.table.schema());
                match schema.and_then(|s| s.column(name)) {
                    Some(col) => Ok(BExpr::Col { slot, col }),
                    None => err(format!("Column {t}.{name} does not exist")),
                }
            }
            None => {
                let mut found = self.entries.iter().filter(|e| e.name.eq_ignore_ascii_case(name));
                match (found.next(), found.next()) {
                    (Some(e), None) => Ok(e.expr.clone()),
                    (Some(_), Some(_)) => err(format!("Column {name} is ambiguous")),
                    (None, _) => err(format!("Column {name} does not exist")),
                }
            }
        }
    }

    fn bind(&self, e: &Expr, mode: &mut Mode<'_>) -> EResult<BExpr> {
        if let Mode::Group { keys, .. } = mode {
            if let Expr::Column { table: None, name } = e
                && let Some((_, target)) = self.aliases.iter().find(|(a, _)| a.eq_ignore_ascii_case(name))
                && !matches!(target, Expr::Column { table: None, name: n } if n.eq_ignore_ascii_case(name))
            {
                let inner = Binder {
                    aliases: &[],
                    ..*self
                };
                return inner.bind(target, mode);
            }
            if !e.has_aggregate()
                && let Ok(b) = self.bind(e, &mut Mode::Row { ctx: "GROUP BY" })
            {
                if let Some(i) = keys.iter().position(|k| *k == b) {
                    return Ok(BExpr::GroupKey(i));
                }
                // A constant (no column at all) is the same in every group.
                let mut has_col = false;
                b.visit(&mut |x| has_col |= matches!(x, BExpr::Coalesce(_) | BExpr::Col { .. }));
                if !has_col {
                    return Ok(b);
                }
            }
            if let Expr::Column { .. } = e {
                // Resolve first so an unknown column is reported as such.
                self.column(
                    match e {
                        Expr::Column { table, .. } => table,
                        _ => &None,
                    },
                    match e {
                        Expr::Column { name, .. } => name,
                        _ => "",
                    },
                )?;
                return group_error(e);
            }
        }
        Ok(match e {
            Expr::Lit(v) | Expr::Param(v) => BExpr::Const(v.clone()),
            Expr::Column { table, name } => self.column(table, name)?,
            Expr::Unary(op, x) => BExpr::Unary(*op, Box::new(self.bind(x, mode)?)),
            Expr::Chain(first, rest) => {
                let f = self.bind(first, mode)?;
                let mut r = Vec::with_capacity(rest.len());
                for (op, x) in rest {
                    r.push((*op, self.bind(x, mode)?));
                }
                BExpr::Chain(Box::new(f), r)
            }
            Expr::Between { e, lo, hi, not } => BExpr::Between {
                e: Box::new(self.bind(e, mode)?),
                lo: Box::new(self.bind(lo, mode)?),
                hi: Box::new(self.bind(hi, mode)?),
                not: *not,
            },
            Expr::In { e, list, not } => {
                let x = self.bind(e, mode)?;
                let mut l = Vec::with_capacity(list.len());
                for i in list {
                    l.push(self.bind(i, mode)?);
                }
                let set = crate::eval::InSet::build(&l).map(Arc::new);
                BExpr::In {
                    e: Box::new(x),
                    list: l,
                    not: *not,
                    set,
                }
            }
            Expr::IsNull { e, not } => BExpr::IsNull {
                e: Box::new(self.bind(e, mode)?),
                not: *not,
            },
            Expr::Like { e, pat, not } => {
                let p = self.bind(pat, mode)?;
                let compiled: Option<Vec<LikeTok>> = match &p {
                    BExpr::Const(v) if !v.is_null() => Some(compile_like(&v.text())),
                    _ => None,
                };
                BExpr::Like {
                    e: Box::new(self.bind(e, mode)?),
                    pat: Box::new(p),
                    not: *not,
                    compiled,
                }
            }
            Expr::Regexp { e, pat, not } => {
                let p = self.bind(pat, mode)?;
                let compiled = match &p {
                    BExpr::Const(v) if !v.is_null() => Some(Re(Arc::new(compile_regex(&v.text())?))),
                    _ => None,
                };
                BExpr::Regexp {
                    e: Box::new(self.bind(e, mode)?),
                    pat: Box::new(p),
                    not: *not,
                    compiled,
                }
            }
            Expr::Call { name, args, star } => {
                let Some(def) = func::lookup(name) else {
                    return err(format!("Function {name} does not exist"));
                };
                if matches!(def.f, F::Tables | F::Columns | F::Functions) {
                    return err(format!(
                        "{}() must be the only item of a SELECT without FROM",
                        def.name.to_uppercase()
                    ));
                }
                if *star && def.f != F::Count {
                    return err(format!("{}(*) is not allowed", def.name.to_uppercase()));
                }
                let n = args.len() + usize::from(*star);
                if n < def.min.max(usize::from(def.f == F::Count)) || n > def.max {
                    return err(format!(
                        "Function {} takes {}, got {n} argument{}",
                        def.sig,
                        arity(def.min.max(usize::from(def.f == F::Count)), def.max),
                        if n == 1 { "" } else { "s" }
                    ));
                }
                let kind = match def.f {
                    F::Count if *star => Some(AggKind::CountStar),
                    F::Count => Some(AggKind::Count),
                    F::Sum => Some(AggKind::Sum),
                    F::Avg => Some(AggKind::Avg),
                    F::Min => Some(AggKind::Min),
                    F::Max => Some(AggKind::Max),
                    _ => None,
                };
                if let Some(kind) = kind {
                    let aggs = match mode {
                        Mode::Row { ctx } => {
                            return err(format!("Aggregate functions are not allowed in {ctx}"));
                        }
                        Mode::Group { aggs, .. } => aggs,
                    };
                    let arg = match args.first() {
                        Some(a) => {
                            if a.has_aggregate() {
                                return err("Aggregate functions cannot be nested");
                            }
                            self.bind(
                                a,
                                &mut Mode::Row {
                                    ctx: "an aggregate argument",
                                },
                            )?
                        }
                        None => BExpr::Const(Value::Null),
                    };
                    let spec = AggSpec { kind, arg };
                    let i = match aggs.iter().position(|a| *a == spec) {
                        Some(i) => i,
                        None => {
                            aggs.push(spec);
                            aggs.len() - 1
                        }
                    };
                    return Ok(BExpr::Agg(i));
                }
                let mut b = Vec::with_capacity(args.len());
                for a in args {
                    b.push(self.bind(a, mode)?);
                }
                BExpr::Func(def.f, b)
            }
        })
    }
}

fn arity(min: usize, max: usize) -> String {
    match (min, max) {
        (a, b) if a == b => format!("{a} argument{}", if a == 1 { "" } else { "s" }),
        (a, usize::MAX) => format!("at least {a} argument{}", if a == 1 { "" } else { "s" }),
        (a, b) => format!("{a} to {b} arguments"),
    }
}

fn static_type(e: &BExpr, slots: &[Slot]) -> Option<ColumnType> {
    match e {
        BExpr::Col { slot, col } => slots.get(*slot)?.table.schema().columns.get(*col).map(|c| c.1),
        BExpr::Coalesce(l) => {
            let mut t = None;
            for x in l {
                let xt = static_type(x, slots)?;
                if t.is_some_and(|p| p != xt) {
                    return None;
                }
                t = Some(xt);
            }
            t
        }
        BExpr::Const(Value::Str(_)) => Some(ColumnType::String),
        BExpr::Const(Value::Int(_)) => Some(ColumnType::Integer),
        BExpr::Const(Value::Bool(_)) => Some(ColumnType::Boolean),
        _ => None,
    }
}

struct Planner<'a> {
    db: &'a Database,
    slots: Vec<Slot>,
}

impl Planner<'_> {
    fn add_slot(&mut self, name: &str, alias: Option<&String>) -> EResult<usize> {
        let Some(table) = self.db.table(name) else {
            return err(format!("Table {name} does not exist"));
        };
        let alias = alias.cloned().unwrap_or_else(|| table.schema().name.to_string());
        if self.slots.iter().any(|s| s.alias.eq_ignore_ascii_case(&alias)) {
            return err(format!("Not unique table/alias: {alias}"));
        }
        if self.slots.len() >= crate::parser::MAX_TABLES {
            return err("Too many tables in FROM");
        }
        self.slots.push(Slot {
            alias,
            table: table.clone(),
        });
        Ok(self.slots.len() - 1)
    }

    fn tree(&mut self, r: &TableRef) -> EResult<(Tree, Vec<Entry>, u64)> {
        match r {
            TableRef::Table { name, alias } => {
                let slot = self.add_slot(name, alias.as_ref())?;
                let schema = self.slots.get(slot).map(|s| s.table.schema());
                let entries = schema
                    .map(|s| s.columns)
                    .unwrap_or(&[])
                    .iter()
                    .enumerate()
                    .map(|(col, (n, _))| Entry {
                        name: n,
                        expr: BExpr::Col { slot, col },
                        slot: Some(slot),
                    })
                    .collect();
                Ok((Tree::Leaf(slot), entries, mask_of(slot)))
            }
            TableRef::Join {
                left,
                right,
                kind,
                cond,
            } => {
                let (lt, le, lm) = self.tree(left)?;
                let (rt, re, rm) = self.tree(right)?;
                let mut on = Vec::new();
                let using: Option<Vec<String>> = match cond {
                    JoinCond::Using(cols) => Some(cols.clone()),
                    JoinCond::Natural => Some(
                        le.iter()
                            .filter(|l| re.iter().any(|r| r.name == l.name))
                            .map(|l| l.name.to_string())
                            .fold(Vec::new(), |mut v, n| {
                                if !v.contains(&n) {
                                    v.push(n);
                                }
                                v
                            }),
                    ),
                    _ => None,
                };
                let entries = match using {
                    Some(cols) => {
                        let find = |list: &[Entry], c: &str, side: &str| -> EResult<BExpr> {
                            let mut it = list.iter().filter(|e| e.name.eq_ignore_ascii_case(c));
                            match (it.next(), it.next()) {
                                (Some(e), None) => Ok(e.expr.clone()),
                                (Some(_), Some(_)) => {
                                    err(format!("Column {c} is ambiguous in the {side} table"))
                                }
                                (None, _) => err(format!("Column {c} does not exist in the {side} table")),
                            }
                        };
                        let mut merged = Vec::new();
                        for c in &cols {
                            let (l, r) = (find(&le, c, "left")?, find(&re, c, "right")?);
                            let e = BExpr::Chain(Box::new(l.clone()), vec![(BinOp::Eq, r.clone())]);
                            on.push(Conj {
                                mask: e.mask(),
                                e,
                                text: format!("using {c}"),
                            });
                            merged.push((c.to_ascii_lowercase(), BExpr::Coalesce(vec![l, r])));
                        }
                        let is_merged = |n: &str| merged.iter().any(|(m, _)| m == n);
                        let mut out: Vec<Entry> = le
                            .iter()
                            .map(|e| match merged.iter().find(|(m, _)| m == e.name) {
                                Some((_, x)) => Entry {
                                    name: e.name,
                                    expr: x.clone(),
                                    slot: None,
                                },
                                None => e.clone(),
                            })
                            .collect();
                        out.extend(re.iter().filter(|e| !is_merged(e.name)).cloned());
                        out
                    }
                    None => le.iter().chain(re.iter()).cloned().collect(),
                };
                if let JoinCond::On(e) = cond {
                    let b = Binder {
                        slots: &self.slots,
                        entries: &entries,
                        allowed: lm | rm,
                        aliases: &[],
                    };
                    let mut parts = Vec::new();
                    split_and(e, &mut parts);
                    for p in parts {
                        let be = b.bind(&p, &mut Mode::Row { ctx: "ON" })?;
                        on.push(Conj {
                            mask: be.mask(),
                            e: be,
                            text: p.to_string(),
                        });
                    }
                }
                Ok((
                    Tree::Join {
                        kind: *kind,
                        left: Box::new(lt),
                        right: Box::new(rt),
                        on,
                    },
                    entries,
                    lm | rm,
                ))
            }
        }
    }

    fn tree_mask(t: &Tree) -> u64 {
        match t {
            Tree::Leaf(s) => mask_of(*s),
            Tree::Join { left, right, .. } => Self::tree_mask(left) | Self::tree_mask(right),
        }
    }

    fn slots_of(m: u64) -> Vec<usize> {
        (0..64).filter(|i| m & mask_of(*i) != 0).collect()
    }

    fn equi(&self, c: &Conj, lm: u64, rm: u64) -> Option<(BExpr, BExpr)> {
        let BExpr::Chain(a, rest) = &c.e else { return None };
        let [(BinOp::Eq, b)] = rest.as_slice() else {
            return None;
        };
        let (am, bm) = (a.mask(), b.mask());
        let (l, r) = if am != 0 && bm != 0 && am & !lm == 0 && bm & !rm == 0 {
            (a.as_ref(), b)
        } else if am != 0 && bm != 0 && bm & !lm == 0 && am & !rm == 0 {
            (b, a.as_ref())
        } else {
            return None;
        };
        let (lt, rt) = (static_type(l, &self.slots)?, static_type(r, &self.slots)?);
        (lt == rt && lt != ColumnType::Float).then(|| (l.clone(), r.clone()))
    }

    /// Places conjuncts (`conds`: already valid at this node's output) at the lowest node.
    fn place(&self, t: Tree, conds: Vec<Conj>) -> Node {
        match t {
            Tree::Leaf(slot) => Node::Scan { slot, filters: conds },
            Tree::Join {
                kind,
                left,
                right,
                on,
            } => {
                let (lm, rm) = (Self::tree_mask(&left), Self::tree_mask(&right));
                let (mut lc, mut rc, mut residual, mut post) =
                    (Vec::new(), Vec::new(), Vec::new(), Vec::new());
                let (mut lkeys, mut rkeys, mut key_text) = (Vec::new(), Vec::new(), Vec::new());
                // Pushed (WHERE-like) conditions.
                for c in conds {
                    let to_left = c.mask & !lm == 0;
                    let to_right = c.mask & !rm == 0 && c.mask != 0;
                    match kind {
                        JoinKind::Inner if to_left => lc.push(c),
                        JoinKind::Inner if to_right => rc.push(c),
                        JoinKind::Inner => match self.equi(&c, lm, rm) {
                            Some((l, r)) => {
                                lkeys.push(l);
                                rkeys.push(r);
                                key_text.push(c.text);
                            }
                            None => residual.push(c),
                        },
                        JoinKind::Left if to_left => lc.push(c),
                        JoinKind::Right if c.mask & !rm == 0 => rc.push(c),
                        _ => post.push(c),
                    }
                }
                // ON conditions: for an outer join, only the nullable side may be filtered early.
                for c in on {
                    let only_l = c.mask & !lm == 0 && c.mask != 0;
                    let only_r = c.mask & !rm == 0 && c.mask != 0;
                    match (kind, only_l, only_r) {
                        (JoinKind::Inner | JoinKind::Right, true, _) => lc.push(c),
                        (JoinKind::Inner | JoinKind::Left, _, true) => rc.push(c),
                        _ => match self.equi(&c, lm, rm) {
                            Some((l, r)) => {
                                lkeys.push(l);
                                rkeys.push(r);
                                key_text.push(c.text);
                            }
                            None => residual.push(c),
                        },
                    }
                }
                Node::Join {
                    kind,
                    left: Box::new(self.place(*left, lc)),
                    right: Box::new(self.place(*right, rc)),
                    lslots: Self::slots_of(lm),
                    rslots: Self::slots_of(rm),
                    lkeys,
                    rkeys,
                    key_text,
                    residual,
                    post,
                }
            }
        }
    }
}

/// The output name of column `name` of the table or alias `table`: `table.name`, lower-cased
/// like every table and column name the engine reports.
fn qualified(table: &str, name: &str) -> String {
    format!("{}.{}", table.to_ascii_lowercase(), name.to_ascii_lowercase())
}

/// Plans a SELECT that is not a table-function call.
pub(crate) fn plan(db: &Database, s: &Select) -> EResult<Plan> {
    let mut p = Planner {
        db,
        slots: Vec::new(),
    };
    let (tree, entries, all) = match &s.from {
        Some(r) => {
            let (t, e, m) = p.tree(r)?;
            (Some(t), e, m)
        }
        None => (None, Vec::new(), 0),
    };
    let aliases: Vec<(String, Expr)> = s
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Expr {
                expr, alias: Some(a), ..
            } => Some((a.clone(), expr.clone())),
            _ => None,
        })
        .collect();
    let row = Binder {
        slots: &p.slots,
        entries: &entries,
        allowed: all,
        aliases: &[],
    };

    // WHERE
    let mut where_conj = Vec::new();
    if let Some(w) = &s.where_ {
        let mut parts = Vec::new();
        split_and(w, &mut parts);
        for part in parts {
            let e = row.bind(&part, &mut Mode::Row { ctx: "WHERE" })?;
            where_conj.push(Conj {
                mask: e.mask(),
                e,
                text: part.to_string(),
            });
        }
    }

    let grouped = !s.group_by.is_empty()
        || s.having.is_some()
        || s.items
            .iter()
            .any(|i| matches!(i, Item::Expr { expr, .. } if expr.has_aggregate()))
        || s.order_by.iter().any(|(e, _)| e.has_aggregate());

    // Output columns, as expressions over rows (plain) or groups (grouped).
    let mut columns = Vec::new();
    let mut items = Vec::new();
    let mut grouping = None;
    let mut order = Vec::new();
    let out_alias = |e: &Expr| -> Option<usize> {
        let Expr::Column { table: None, name } = e else {
            return None;
        };
        let mut idx = 0usize;
        for it in &s.items {
            match it {
                Item::Expr { alias: Some(a), .. } if a.eq_ignore_ascii_case(name) => return Some(idx),
                Item::Expr { .. } => idx += 1,
                _ => return None,
            }
        }
        None
    };
    let position = |e: &Expr, n: usize, what: &str| -> EResult<Option<usize>> {
        match e {
            Expr::Lit(Value::Int(i)) => {
                if *i >= 1 && (*i as u64) <= n as u64 {
                    Ok(Some((*i - 1) as usize))
                } else {
                    err(format!("{what} position {i} is not in the select list"))
                }
            }
            _ => Ok(None),
        }
    };

    // Expand items to (expr-or-bexpr, name).
    enum Out<'x> {
        Ast(&'x Expr),
        Bound(BExpr),
    }
    let mut outs: Vec<Out<'_>> = Vec::new();
    for it in &s.items {
        match it {
            Item::Star => {
                if s.from.is_none() {
                    return err("SELECT * needs a FROM clause");
                }
                // One table: bare names. A join: `qualifier.column`, where the qualifier is
                // unique, so no two names collide (a USING/NATURAL column, which belongs to
                // both sides, keeps its bare name; it is the only one of that name).
                let join = p.slots.len() > 1;
                for e in &entries {
                    columns.push(match (join, e.slot.and_then(|x| p.slots.get(x))) {
                        (true, Some(slot)) => qualified(&slot.alias, e.name),
                        _ => e.name.to_string(),
                    });
                    outs.push(Out::Bound(e.expr.clone()));
                }
            }
            Item::TableStar(t) => {
                let Some(slot) = p.slots.iter().position(|x| x.alias.eq_ignore_ascii_case(t)) else {
                    return err(format!("Table {t} is not in FROM"));
                };
                let cols = p.slots.get(slot).map_or(&[][..], |x| x.table.schema().columns);
                for (col, (n, _)) in cols.iter().enumerate() {
                    columns.push(qualified(t, n));
                    outs.push(Out::Bound(BExpr::Col { slot, col }));
                }
            }
            Item::Expr { expr, alias, text } => {
                columns.push(match (alias, expr) {
                    (Some(a), _) => a.clone(),
                    (None, Expr::Column { table: Some(t), name }) => qualified(t, name),
                    (None, Expr::Column { table: None, name }) => name.to_ascii_lowercase(),
                    (None, _) => text.clone(),
                });
                outs.push(Out::Ast(expr));
            }
        }
    }

    if grouped {
        // GROUP BY keys: expressions, output positions or output aliases.
        let item_ast = |i: usize| -> Option<&Expr> {
            match outs.get(i) {
                Some(Out::Ast(e)) => Some(*e),
                _ => None,
            }
        };
        let mut keys = Vec::new();
        for g in &s.group_by {
            let target = match position(g, outs.len(), "GROUP BY")? {
                Some(i) => match item_ast(i) {
                    Some(e) => e,
                    None => return err("GROUP BY position refers to *"),
                },
                None => g,
            };
            if target.has_aggregate() {
                return err("Aggregate functions are not allowed in GROUP BY");
            }
            let k = match row.bind(target, &mut Mode::Row { ctx: "GROUP BY" }) {
                Ok(k) => k,
                Err(e) => match out_alias(target).and_then(item_ast) {
                    Some(a) if !a.has_aggregate() => row.bind(a, &mut Mode::Row { ctx: "GROUP BY" })?,
                    _ => return Err(e),
                },
            };
            keys.push(k);
        }
        let gb = Binder {
            aliases: &aliases,
            ..row
        };
        let mut aggs = Vec::new();
        for (o, name) in outs.iter().zip(&columns) {
            let b = match o {
                Out::Ast(e) => gb.bind(
                    e,
                    &mut Mode::Group {
                        keys: &keys,
                        aggs: &mut aggs,
                    },
                )?,
                Out::Bound(b) => match keys.iter().position(|k| k == b) {
                    Some(i) => BExpr::GroupKey(i),
                    None => {
                        return group_error(&Expr::Column {
                            table: None,
                            name: name.clone(),
                        });
                    }
                },
            };
            items.push(b);
        }
        let having = match &s.having {
            Some(h) => Some(gb.bind(
                h,
                &mut Mode::Group {
                    keys: &keys,
                    aggs: &mut aggs,
                },
            )?),
            None => None,
        };
        for (e, desc) in &s.order_by {
            let k = match (position(e, items.len(), "ORDER BY")?, out_alias(e)) {
                (Some(i), _) | (None, Some(i)) => OrderKey::Output(i),
                _ => OrderKey::Expr(gb.bind(
                    e,
                    &mut Mode::Group {
                        keys: &keys,
                        aggs: &mut aggs,
                    },
                )?),
            };
            order.push((k, *desc));
        }
        grouping = Some(Grouping { keys, aggs, having });
    } else {
        for o in outs {
            items.push(match o {
                Out::Ast(e) => row.bind(e, &mut Mode::Row { ctx: "SELECT" })?,
                Out::Bound(b) => b,
            });
        }
        for (e, desc) in &s.order_by {
            let k = match (position(e, items.len(), "ORDER BY")?, out_alias(e)) {
                (Some(i), _) | (None, Some(i)) => OrderKey::Output(i),
                _ => OrderKey::Expr(row.bind(e, &mut Mode::Row { ctx: "ORDER BY" })?),
            };
            order.push((k, *desc));
        }
    }

    let order_text = s
        .order_by
        .iter()
        .map(|(e, d)| format!("{e}{}", if *d { " desc" } else { "" }))
        .collect();
    let (root, filter) = match tree {
        Some(t) => (Some(p.place(t, where_conj)), Vec::new()),
        None => (None, where_conj),
    };
    Ok(Plan {
        tables: p.slots.iter().map(|s| s.table.clone()).collect(),
        root,
        filter,
        grouping,
        columns,
        items,
        order,
        limit: s.limit,
        order_text,
        slot_names: p
            .slots
            .iter()
            .map(|s| (s.alias.clone(), s.table.schema().name))
            .collect(),
    })
}

impl Plan {
    fn slot_text(&self, slot: usize) -> String {
        match self.slot_names.get(slot) {
            Some((a, t)) if a == t => format!("table {t}"),
            Some((a, t)) => format!("table {t} as {a}"),
            None => String::from("table"),
        }
    }

    fn node_steps(&self, n: &Node, out: &mut Vec<String>) {
        let conds = |c: &[Conj]| {
            c.iter()
                .map(|x| x.text.as_str())
                .collect::<Vec<_>>()
                .join(" and ")
        };
        match n {
            Node::Scan { slot, filters } => {
                let rows = self.tables.get(*slot).map_or(0, |t| t.len());
                let mut s = format!("scan {} ({rows} rows)", self.slot_text(*slot));
                if !filters.is_empty() {
                    s.push_str(&format!(" filter {}", conds(filters)));
                }
                out.push(s);
            }
            Node::Join {
                kind,
                left,
                right,
                key_text,
                residual,
                post,
                ..
            } => {
                let (build, probe) = if *kind == JoinKind::Right {
                    (left, right)
                } else {
                    (right, left)
                };
                self.node_steps(build, out);
                self.node_steps(probe, out);
                let kind_s = match kind {
                    JoinKind::Inner => "inner",
                    JoinKind::Left => "left outer",
                    JoinKind::Right => "right outer",
                };
                let mut s = if key_text.is_empty() {
                    format!("nested loop {kind_s} join")
                } else {
                    format!("hash {kind_s} join on {}", key_text.join(" and "))
                };
                if !residual.is_empty() {
                    s.push_str(&format!(
                        " {} {}",
                        if key_text.is_empty() { "on" } else { "and" },
                        conds(residual)
                    ));
                }
                out.push(s);
                if !post.is_empty() {
                    out.push(format!("filter {}", conds(post)));
                }
            }
        }
    }

    /// One line per plan step, in execution order.
    pub(crate) fn explain(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.root {
            Some(n) => self.node_steps(n, &mut out),
            None => out.push(String::from("one row without table")),
        }
        if !self.filter.is_empty() {
            out.push(format!(
                "filter {}",
                self.filter
                    .iter()
                    .map(|c| c.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            ));
        }
        if let Some(g) = &self.grouping {
            out.push(if g.keys.is_empty() {
                format!("aggregate into one group ({} aggregates)", g.aggs.len())
            } else {
                format!(
                    "hash aggregate by {} keys ({} aggregates)",
                    g.keys.len(),
                    g.aggs.len()
                )
            });
            if g.having.is_some() {
                out.push(String::from("filter groups (having)"));
            }
        }
        out.push(format!("project {}", self.columns.join(", ")));
        if !self.order_text.is_empty() {
            out.push(format!("sort by {}", self.order_text.join(", ")));
        }
        if let Some((off, n)) = self.limit {
            out.push(format!("limit {n} offset {off}"));
        }
        out
    }
}
