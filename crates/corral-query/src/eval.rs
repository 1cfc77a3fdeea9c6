//! Bound expressions (names resolved to table slots and columns) and their evaluation. Every
//! operation that can fail returns an error value: integer overflow, conversions and regular
//! expressions are `evaluation_error`s, never panics.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;

use crate::ast::{BinOp, UnOp};
use crate::func::F;
use crate::schema::Table;
use crate::value::{FxBuild, NULL, Num, Value, compare, equal, parse_num};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EvalError(pub String);

pub(crate) type EResult<T> = Result<T, EvalError>;

pub(crate) fn err<T>(msg: impl Into<String>) -> EResult<T> {
    Err(EvalError(msg.into()))
}

/// Longest string a function may build; keeps `REPLACE` and friends from multiplying memory.
pub(crate) const MAX_STRING: usize = 1 << 20;

/// The statement deadline. Loops call [`Deadline::tick`] once per unit of work; the clock is read
/// every 256 ticks, which keeps the check well under 1% of a row's cost.
pub(crate) struct Deadline {
    /// `None`: the timeout is too large to represent, i.e. no deadline.
    end: Option<Instant>,
    ms: u128,
    ticks: Cell<u32>,
}

impl Deadline {
    pub(crate) fn new(timeout: Duration) -> Self {
        let now = Instant::now();
        Deadline {
            end: now.checked_add(timeout),
            ms: timeout.as_millis(),
            ticks: Cell::new(0),
        }
    }

    #[inline]
    pub(crate) fn tick(&self) -> EResult<()> {
        let t = self.ticks.get().wrapping_add(1);
        self.ticks.set(t);
        if t & 255 == 0 { self.check() } else { Ok(()) }
    }

    pub(crate) fn check(&self) -> EResult<()> {
        match self.end {
            Some(end) if Instant::now() >= end => err(self.message()),
            _ => Ok(()),
        }
    }

    pub(crate) fn message(&self) -> String {
        format!("Statement timeout of {} ms exceeded.", self.ms)
    }
}

/// A compiled regular expression; equal when written the same.
#[derive(Debug, Clone)]
pub(crate) struct Re(pub Arc<Regex>);

impl PartialEq for Re {
    fn eq(&self, o: &Re) -> bool {
        self.0.as_str() == o.0.as_str()
    }
}

pub(crate) fn compile_regex(p: &str) -> EResult<Regex> {
    regex::RegexBuilder::new(p)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .or_else(|e| {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or("").trim();
            let first = last.strip_prefix("error: ").unwrap_or(last).to_string();
            err(format!("Invalid regular expression '{}': {first}", short(p)))
        })
}

fn short(s: &str) -> String {
    let mut o: String = s.chars().take(40).collect();
    if s.chars().nth(40).is_some() {
        o.push_str("...");
    }
    o
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LikeTok {
    Lit(char),
    One,
    Any,
}

pub(crate) fn compile_like(p: &str) -> Vec<LikeTok> {
    let mut out = Vec::new();
    let mut it = p.chars();
    while let Some(c) = it.next() {
        out.push(match c {
            '%' => {
                if out.last() == Some(&LikeTok::Any) {
                    continue;
                }
                LikeTok::Any
            }
            '_' => LikeTok::One,
            '\\' => LikeTok::Lit(it.next().unwrap_or('\\')),
            c => LikeTok::Lit(c),
        });
    }
    out
}

/// Wildcard matching with one backtrack point (linear in the common case, O(n·m) at worst, and the
/// deadline is consulted while it runs).
pub(crate) fn like_match(pat: &[LikeTok], s: &str, dl: &Deadline) -> EResult<bool> {
    let mut p = 0usize;
    let mut cur = s.chars();
    let mut star: Option<(usize, std::str::Chars<'_>)> = None;
    loop {
        dl.tick()?;
        let step = match pat.get(p) {
            Some(LikeTok::Any) => {
                star = Some((p + 1, cur.clone()));
                p += 1;
                continue;
            }
            Some(LikeTok::One) => cur.next().is_some(),
            Some(LikeTok::Lit(c)) => {
                let mut t = cur.clone();
                if t.next() == Some(*c) {
                    cur = t;
                    true
                } else {
                    false
                }
            }
            None => {
                if cur.clone().next().is_none() {
                    return Ok(true);
                }
                false
            }
        };
        if step {
            p += 1;
            continue;
        }
        match &mut star {
            Some((sp, sc)) => {
                if sc.next().is_none() {
                    return Ok(false);
                }
                cur = sc.clone();
                p = *sp;
            }
            None => return Ok(false),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum BExpr {
    Const(Value),
    Col {
        slot: usize,
        col: usize,
    },
    /// A USING/NATURAL join column: the first non-NULL side.
    Coalesce(Vec<BExpr>),
    /// Group context: the i-th GROUP BY key / aggregate result.
    GroupKey(usize),
    Agg(usize),
    Unary(UnOp, Box<BExpr>),
    Chain(Box<BExpr>, Vec<(BinOp, BExpr)>),
    Between {
        e: Box<BExpr>,
        lo: Box<BExpr>,
        hi: Box<BExpr>,
        not: bool,
    },
    /// `set`: the list as a hash set when it is made of constants of one kind.
    In {
        e: Box<BExpr>,
        list: Vec<BExpr>,
        not: bool,
        set: Option<Arc<InSet>>,
    },
    IsNull {
        e: Box<BExpr>,
        not: bool,
    },
    Like {
        e: Box<BExpr>,
        pat: Box<BExpr>,
        not: bool,
        compiled: Option<Vec<LikeTok>>,
    },
    Regexp {
        e: Box<BExpr>,
        pat: Box<BExpr>,
        not: bool,
        compiled: Option<Re>,
    },
    Func(F, Vec<BExpr>),
}

/// A constant IN list for O(1) membership; only used where it agrees with [`compare`].
#[derive(Debug)]
pub(crate) enum InSet {
    Ints(HashSet<i64, FxBuild>),
    Strs(HashSet<Arc<str>, FxBuild>),
}

impl PartialEq for InSet {
    fn eq(&self, _: &InSet) -> bool {
        // The list itself is compared by `BExpr::In`.
        true
    }
}

impl InSet {
    pub(crate) fn build(list: &[BExpr]) -> Option<InSet> {
        if list.len() < 8 {
            return None;
        }
        match list.first()? {
            BExpr::Const(Value::Int(_)) => {
                let mut s = HashSet::with_capacity_and_hasher(list.len(), FxBuild::default());
                for x in list {
                    let BExpr::Const(Value::Int(i)) = x else {
                        return None;
                    };
                    s.insert(*i);
                }
                Some(InSet::Ints(s))
            }
            BExpr::Const(Value::Str(_)) => {
                let mut s = HashSet::with_capacity_and_hasher(list.len(), FxBuild::default());
                for x in list {
                    let BExpr::Const(Value::Str(v)) = x else {
                        return None;
                    };
                    s.insert(v.clone());
                }
                Some(InSet::Strs(s))
            }
            _ => None,
        }
    }

    /// `None`: this value needs the general comparison.
    fn contains(&self, v: &Value) -> Option<bool> {
        let int = |n: Num| match n {
            Num::Int(i) => Some(i),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Some(f as i64),
            Num::Float(_) => None,
        };
        match (self, v) {
            (InSet::Ints(s), Value::Int(i)) => Some(s.contains(i)),
            (InSet::Ints(s), Value::Bool(b)) => Some(s.contains(&i64::from(*b))),
            (InSet::Ints(s), Value::Float(f)) => Some(int(Num::Float(*f)).is_some_and(|i| s.contains(&i))),
            // A string equals a number only if it parses as that number.
            (InSet::Ints(s), Value::Str(x)) => {
                Some(parse_num(x).and_then(int).is_some_and(|i| s.contains(&i)))
            }
            (InSet::Strs(s), Value::Str(x)) => Some(s.contains(x)),
            _ => None,
        }
    }
}

/// What a row is while expressions are evaluated.
pub(crate) enum Row<'t, 'i> {
    /// One row per table slot (`u32::MAX`: the NULL side of an outer join).
    Tables {
        tables: &'t [Arc<Table>],
        ids: &'i [u32],
    },
    Group {
        keys: &'t [Value],
        aggs: &'t [Value],
    },
}

pub(crate) const NONE: u32 = u32::MAX;

pub(crate) struct Env<'a> {
    pub dl: &'a Deadline,
    pub version: &'a str,
    pub regex_cache: RefCell<Option<(String, Re)>>,
    pub rand: Cell<u64>,
}

impl<'a> Env<'a> {
    pub(crate) fn new(dl: &'a Deadline, version: &'a str) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x1234_5678, |d| d.as_nanos() as u64);
        Env {
            dl,
            version,
            regex_cache: RefCell::new(None),
            rand: Cell::new(seed),
        }
    }

    fn regex(&self, p: &str) -> EResult<Re> {
        if let Some((k, r)) = self.regex_cache.borrow().as_ref()
            && k == p
        {
            return Ok(r.clone());
        }
        let r = Re(Arc::new(compile_regex(p)?));
        *self.regex_cache.borrow_mut() = Some((p.to_string(), r.clone()));
        Ok(r)
    }
}

/// SQL truth of a value; `None` is unknown (NULL).
pub(crate) fn truth(v: &Value) -> Option<bool> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(*b),
        Value::Int(i) => Some(*i != 0),
        Value::Float(f) => Some(*f != 0.0),
        Value::Str(s) => Some(if s.eq_ignore_ascii_case("true") {
            true
        } else {
            parse_num(s).is_some_and(|n| n.f() != 0.0)
        }),
    }
}

fn b3(v: Option<bool>) -> Value {
    v.map_or(Value::Null, Value::Bool)
}

pub(crate) fn to_num(v: &Value) -> EResult<Option<Num>> {
    Ok(Some(match v {
        Value::Null => return Ok(None),
        Value::Bool(b) => Num::Int(i64::from(*b)),
        Value::Int(i) => Num::Int(*i),
        Value::Float(f) => Num::Float(*f),
        Value::Str(s) => match parse_num(s) {
            Some(n) => n,
            None => return err(format!("Cannot convert '{}' to a number", short(s))),
        },
    }))
}

pub(crate) fn num_to_int(n: Num) -> EResult<i64> {
    match n {
        Num::Int(i) => Ok(i),
        Num::Float(f) if (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&f) => {
            Ok(f.trunc() as i64)
        }
        Num::Float(f) => err(format!("Cannot convert {f} to an integer")),
    }
}

pub(crate) fn overflow<T>() -> EResult<T> {
    err("Integer overflow")
}

pub(crate) fn arith(op: BinOp, a: &Value, b: &Value) -> EResult<Value> {
    let (Some(x), Some(y)) = (to_num(a)?, to_num(b)?) else {
        return Ok(Value::Null);
    };
    use Num::Int as I;
    Ok(match op {
        BinOp::Add | BinOp::Sub | BinOp::Mul => match (x, y) {
            (I(p), I(q)) => {
                let r = match op {
                    BinOp::Add => p.checked_add(q),
                    BinOp::Sub => p.checked_sub(q),
                    _ => p.checked_mul(q),
                };
                Value::Int(r.map_or_else(overflow, Ok)?)
            }
            _ => Value::Float(match op {
                BinOp::Add => x.f() + y.f(),
                BinOp::Sub => x.f() - y.f(),
                _ => x.f() * y.f(),
            }),
        },
        BinOp::Div => {
            if y.f() == 0.0 {
                Value::Null
            } else {
                Value::Float(x.f() / y.f())
            }
        }
        BinOp::Mod => match (x, y) {
            (_, I(0)) => Value::Null,
            (I(p), I(q)) => Value::Int(p.checked_rem(q).unwrap_or(0)),
            _ if y.f() == 0.0 => Value::Null,
            _ => Value::Float(x.f() % y.f()),
        },
        _ => {
            let (p, q) = (num_to_int(x)?, num_to_int(y)?);
            Value::Int(match op {
                BinOp::BitAnd => p & q,
                BinOp::BitOr => p | q,
                BinOp::BitXor => p ^ q,
                // 64-bit unsigned shifts, as MySQL; shifting by 64 or more (or a negative count) gives 0.
                BinOp::Shl => u32::try_from(q)
                    .ok()
                    .and_then(|s| (p as u64).checked_shl(s))
                    .map_or(0, |v| v as i64),
                BinOp::Shr => u32::try_from(q)
                    .ok()
                    .and_then(|s| (p as u64).checked_shr(s))
                    .map_or(0, |v| v as i64),
                _ => return err("unsupported operator"),
            })
        }
    })
}

fn cmp_op(op: BinOp, o: Option<Ordering>) -> Value {
    let Some(o) = o else { return Value::Null };
    Value::Bool(match op {
        BinOp::Eq => o == Ordering::Equal,
        BinOp::Ne => o != Ordering::Equal,
        BinOp::Lt => o == Ordering::Less,
        BinOp::Le => o != Ordering::Greater,
        BinOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    })
}

impl BExpr {
    /// Evaluates, borrowing column values and constants instead of cloning them.
    pub(crate) fn eval<'r>(&'r self, env: &Env<'_>, row: &Row<'r, '_>) -> EResult<Cow<'r, Value>> {
        Ok(match self {
            BExpr::Const(v) => Cow::Borrowed(v),
            BExpr::Col { slot, col } => match row {
                Row::Tables { tables, ids } => match (tables.get(*slot), ids.get(*slot)) {
                    (Some(t), Some(&id)) if id != NONE => Cow::Borrowed(t.get(id, *col)),
                    _ => Cow::Borrowed(&NULL),
                },
                Row::Group { .. } => Cow::Borrowed(&NULL),
            },
            BExpr::GroupKey(i) => match row {
                Row::Group { keys, .. } => Cow::Borrowed(keys.get(*i).unwrap_or(&NULL)),
                Row::Tables { .. } => Cow::Borrowed(&NULL),
            },
            BExpr::Agg(i) => match row {
                Row::Group { aggs, .. } => Cow::Borrowed(aggs.get(*i).unwrap_or(&NULL)),
                Row::Tables { .. } => Cow::Borrowed(&NULL),
            },
            BExpr::Coalesce(list) => {
                for e in list {
                    let v = e.eval(env, row)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Cow::Borrowed(&NULL)
            }
            BExpr::Unary(op, e) => {
                let v = e.eval(env, row)?;
                Cow::Owned(match op {
                    UnOp::Not => b3(truth(&v).map(|b| !b)),
                    UnOp::Plus => match to_num(&v)? {
                        Some(n) => n.value(),
                        None => Value::Null,
                    },
                    UnOp::Neg => match to_num(&v)? {
                        Some(Num::Int(i)) => Value::Int(i.checked_neg().map_or_else(overflow, Ok)?),
                        Some(Num::Float(f)) => Value::Float(-f),
                        None => Value::Null,
                    },
                    UnOp::BitNot => match to_num(&v)? {
                        Some(n) => Value::Int(!num_to_int(n)?),
                        None => Value::Null,
                    },
                })
            }
            BExpr::Chain(first, rest) => {
                let mut acc = first.eval(env, row)?;
                for (op, rhs) in rest {
                    acc = Cow::Owned(match op {
                        BinOp::And => match truth(&acc) {
                            Some(false) => Value::Bool(false),
                            a => match (a, truth(&*rhs.eval(env, row)?)) {
                                (_, Some(false)) => Value::Bool(false),
                                (Some(true), Some(true)) => Value::Bool(true),
                                _ => Value::Null,
                            },
                        },
                        BinOp::Or => match truth(&acc) {
                            Some(true) => Value::Bool(true),
                            a => match (a, truth(&*rhs.eval(env, row)?)) {
                                (_, Some(true)) => Value::Bool(true),
                                (Some(false), Some(false)) => Value::Bool(false),
                                _ => Value::Null,
                            },
                        },
                        BinOp::Xor => match (truth(&acc), truth(&*rhs.eval(env, row)?)) {
                            (Some(a), Some(b)) => Value::Bool(a != b),
                            _ => Value::Null,
                        },
                        BinOp::Eq | BinOp::Ne => {
                            let r = rhs.eval(env, row)?;
                            b3(equal(&acc, &r).map(|e| e == (*op == BinOp::Eq)))
                        }
                        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                            cmp_op(*op, compare(&acc, &*rhs.eval(env, row)?))
                        }
                        _ => arith(*op, &acc, &*rhs.eval(env, row)?)?,
                    });
                }
                acc
            }
            BExpr::Between { e, lo, hi, not } => {
                let v = e.eval(env, row)?;
                let a = compare(&v, &*lo.eval(env, row)?).map(|o| o != Ordering::Less);
                let b = compare(&v, &*hi.eval(env, row)?).map(|o| o != Ordering::Greater);
                let r = match (a, b) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                };
                Cow::Owned(b3(r.map(|x| x != *not)))
            }
            BExpr::In { e, list, not, set } => {
                let v = e.eval(env, row)?;
                let mut r = if v.is_null() { None } else { Some(false) };
                if let (Some(set), false) = (set, v.is_null())
                    && let Some(found) = set.contains(&v)
                {
                    return Ok(Cow::Owned(Value::Bool(found != *not)));
                }
                if r.is_some() {
                    for x in list {
                        env.dl.tick()?;
                        match compare(&v, &*x.eval(env, row)?) {
                            Some(Ordering::Equal) => {
                                r = Some(true);
                                break;
                            }
                            None => r = None,
                            _ => {}
                        }
                    }
                    // A NULL in the list makes a non-match unknown, a match stays true.
                }
                Cow::Owned(b3(r.map(|x| x != *not)))
            }
            BExpr::IsNull { e, not } => Cow::Owned(Value::Bool(e.eval(env, row)?.is_null() != *not)),
            BExpr::Like {
                e,
                pat,
                not,
                compiled,
            } => {
                let v = e.eval(env, row)?;
                let p = pat.eval(env, row)?;
                if v.is_null() || p.is_null() {
                    return Ok(Cow::Borrowed(&NULL));
                }
                let m = match compiled {
                    Some(c) => like_match(c, &v.text(), env.dl)?,
                    None => like_match(&compile_like(&p.text()), &v.text(), env.dl)?,
                };
                Cow::Owned(Value::Bool(m != *not))
            }
            BExpr::Regexp {
                e,
                pat,
                not,
                compiled,
            } => {
                let v = e.eval(env, row)?;
                let p = pat.eval(env, row)?;
                if v.is_null() || p.is_null() {
                    return Ok(Cow::Borrowed(&NULL));
                }
                let m = match compiled {
                    Some(c) => c.0.is_match(&v.text()),
                    None => env.regex(&p.text())?.0.is_match(&v.text()),
                };
                Cow::Owned(Value::Bool(m != *not))
            }
            BExpr::Func(f, args) => {
                // Most calls have few arguments: no allocation for them.
                if args.len() <= 4 {
                    let mut vals: [Value; 4] = Default::default();
                    for (slot, a) in vals.iter_mut().zip(args) {
                        *slot = a.eval(env, row)?.into_owned();
                    }
                    Cow::Owned(crate::func::call(*f, vals.get(..args.len()).unwrap_or(&[]), env)?)
                } else {
                    let mut vals = Vec::with_capacity(args.len());
                    for a in args {
                        vals.push(a.eval(env, row)?.into_owned());
                    }
                    Cow::Owned(crate::func::call(*f, &vals, env)?)
                }
            }
        })
    }

    /// Filter semantics: NULL is false.
    pub(crate) fn test(&self, env: &Env<'_>, row: &Row<'_, '_>) -> EResult<bool> {
        Ok(truth(&*self.eval(env, row)?) == Some(true))
    }

    /// Bit mask of the table slots the expression reads.
    pub(crate) fn mask(&self) -> u64 {
        let mut m = 0u64;
        self.visit(&mut |e| {
            if let BExpr::Col { slot, .. } = e {
                m |= 1u64.checked_shl(*slot as u32).unwrap_or(0);
            }
        });
        m
    }

    pub(crate) fn visit(&self, f: &mut dyn FnMut(&BExpr)) {
        f(self);
        match self {
            BExpr::Const(_) | BExpr::Col { .. } | BExpr::GroupKey(_) | BExpr::Agg(_) => {}
            BExpr::Coalesce(l) | BExpr::Func(_, l) => l.iter().for_each(|e| e.visit(f)),
            BExpr::Unary(_, e) | BExpr::IsNull { e, .. } => e.visit(f),
            BExpr::Chain(a, rest) => {
                a.visit(f);
                rest.iter().for_each(|(_, e)| e.visit(f));
            }
            BExpr::Between { e, lo, hi, .. } => {
                e.visit(f);
                lo.visit(f);
                hi.visit(f);
            }
            BExpr::In { e, list, .. } => {
                e.visit(f);
                list.iter().for_each(|x| x.visit(f));
            }
            BExpr::Like { e, pat, .. } | BExpr::Regexp { e, pat, .. } => {
                e.visit(f);
                pat.visit(f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(p: &str, s: &str) -> bool {
        let dl = Deadline::new(Duration::from_secs(5));
        like_match(&compile_like(p), s, &dl).unwrap()
    }

    #[test]
    fn like_patterns() {
        assert!(like("a%", "abc"));
        assert!(like("%c", "abc"));
        assert!(like("a_c", "abc"));
        assert!(!like("a_c", "abbc"));
        assert!(like("%b%", "abc"));
        assert!(like("50\\%", "50%"));
        assert!(!like("50\\%", "500"));
        assert!(like("%a%b%c", "xxaxxbxxbc"));
        assert!(like("", ""));
        assert!(!like("", "a"));
        assert!(like("é_", "éx"));
    }

    #[test]
    fn arithmetic_edges() {
        assert_eq!(
            arith(BinOp::Div, &Value::Int(1), &Value::Int(0)).unwrap(),
            Value::Null
        );
        assert_eq!(
            arith(BinOp::Mod, &Value::Int(1), &Value::Int(0)).unwrap(),
            Value::Null
        );
        assert!(arith(BinOp::Add, &Value::Int(i64::MAX), &Value::Int(1)).is_err());
        assert_eq!(
            arith(BinOp::Mod, &Value::Int(i64::MIN), &Value::Int(-1)).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            arith(BinOp::Shl, &Value::Int(1), &Value::Int(64)).unwrap(),
            Value::Int(0)
        );
        assert_eq!(
            arith(BinOp::Div, &Value::Int(3), &Value::Int(2)).unwrap(),
            Value::Float(1.5)
        );
    }
}
