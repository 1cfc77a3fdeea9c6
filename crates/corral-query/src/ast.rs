//! The syntax tree of spec 4.5. Same-precedence binary operators form one flat [`Expr::Chain`], so
//! `1+1+...+1` is one node, not a tree as deep as it is long: the tree depth is bounded by the
//! parser's nesting limit, and evaluating or dropping a tree cannot overflow the stack.

use std::fmt;

use crate::value::{Value, float_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    Xor,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    BitOr,
    BitAnd,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    BitXor,
}

impl BinOp {
    pub(crate) fn text(self) -> &'static str {
        use BinOp::*;
        match self {
            Or => "or",
            Xor => "xor",
            And => "and",
            Eq => "=",
            Ne => "!=",
            Lt => "<",
            Le => "<=",
            Gt => ">",
            Ge => ">=",
            BitOr => "|",
            BitAnd => "&",
            Shl => "<<",
            Shr => ">>",
            Add => "+",
            Sub => "-",
            Mul => "*",
            Div => "/",
            Mod => "%",
            BitXor => "^",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    Plus,
    BitNot,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Lit(Value),
    Param(Value),
    Column {
        table: Option<String>,
        name: String,
    },
    Unary(UnOp, Box<Expr>),
    Chain(Box<Expr>, Vec<(BinOp, Expr)>),
    Between {
        e: Box<Expr>,
        lo: Box<Expr>,
        hi: Box<Expr>,
        not: bool,
    },
    In {
        e: Box<Expr>,
        list: Vec<Expr>,
        not: bool,
    },
    IsNull {
        e: Box<Expr>,
        not: bool,
    },
    Like {
        e: Box<Expr>,
        pat: Box<Expr>,
        not: bool,
    },
    Regexp {
        e: Box<Expr>,
        pat: Box<Expr>,
        not: bool,
    },
    /// `star` is `COUNT(*)`.
    Call {
        name: String,
        args: Vec<Expr>,
        star: bool,
    },
}

pub(crate) const AGGREGATES: &[&str] = &["count", "sum", "avg", "min", "max"];

impl Expr {
    pub(crate) fn is_aggregate_call(&self) -> bool {
        matches!(self, Expr::Call { name, .. } if AGGREGATES.contains(&name.as_str()))
    }

    /// Whether an aggregate call occurs anywhere in the expression.
    pub(crate) fn has_aggregate(&self) -> bool {
        let mut found = false;
        self.walk(&mut |e| found |= e.is_aggregate_call());
        found
    }

    pub(crate) fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Lit(_) | Expr::Param(_) | Expr::Column { .. } => {}
            Expr::Unary(_, e) | Expr::IsNull { e, .. } => e.walk(f),
            Expr::Chain(first, rest) => {
                first.walk(f);
                rest.iter().for_each(|(_, e)| e.walk(f));
            }
            Expr::Between { e, lo, hi, .. } => {
                e.walk(f);
                lo.walk(f);
                hi.walk(f);
            }
            Expr::In { e, list, .. } => {
                e.walk(f);
                list.iter().for_each(|x| x.walk(f));
            }
            Expr::Like { e, pat, .. } | Expr::Regexp { e, pat, .. } => {
                e.walk(f);
                pat.walk(f);
            }
            Expr::Call { args, .. } => args.iter().for_each(|x| x.walk(f)),
        }
    }
}

fn not(n: bool) -> &'static str {
    if n { "not " } else { "" }
}

/// Canonical text, used in EXPLAIN and error messages.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Lit(v) | Expr::Param(v) => match v {
                Value::Null => write!(f, "null"),
                Value::Str(s) => write!(f, "'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
                Value::Float(x) => write!(f, "{}", float_text(*x)),
                o => write!(f, "{}", o.text()),
            },
            Expr::Column { table: Some(t), name } => write!(f, "{t}.{name}"),
            Expr::Column { table: None, name } => write!(f, "{name}"),
            Expr::Unary(op, e) => {
                let o = match op {
                    UnOp::Not => "not ",
                    UnOp::Neg => "-",
                    UnOp::Plus => "+",
                    UnOp::BitNot => "~",
                };
                write!(f, "{o}{e}")
            }
            Expr::Chain(first, rest) => {
                write!(f, "({first}")?;
                for (op, e) in rest {
                    write!(f, " {} {e}", op.text())?;
                }
                write!(f, ")")
            }
            Expr::Between { e, lo, hi, not: n } => write!(f, "({e} {}between {lo} and {hi})", not(*n)),
            Expr::In { e, list, not: n } => {
                write!(f, "({e} {}in (", not(*n))?;
                for (i, x) in list.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    if i >= 8 {
                        write!(f, "... {} more", list.len() - 8)?;
                        break;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "))")
            }
            Expr::IsNull { e, not: n } => write!(f, "({e} is {}null)", not(*n)),
            Expr::Like { e, pat, not: n } => write!(f, "({e} {}like {pat})", not(*n)),
            Expr::Regexp { e, pat, not: n } => write!(f, "({e} {}regexp {pat})", not(*n)),
            Expr::Call { name, args, star } => {
                write!(f, "{name}(")?;
                if *star {
                    write!(f, "*")?;
                }
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Item {
    Star,
    TableStar(String),
    Expr {
        expr: Expr,
        alias: Option<String>,
        text: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JoinKind {
    Inner,
    Left,
    Right,
}

#[derive(Debug, Clone)]
pub(crate) enum JoinCond {
    None,
    On(Expr),
    Using(Vec<String>),
    Natural,
}

#[derive(Debug, Clone)]
pub(crate) enum TableRef {
    Table {
        name: String,
        alias: Option<String>,
    },
    Join {
        left: Box<TableRef>,
        right: Box<TableRef>,
        kind: JoinKind,
        cond: JoinCond,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Select {
    pub items: Vec<Item>,
    pub from: Option<TableRef>,
    pub where_: Option<Expr>,
    pub group_by: Vec<Expr>,
    pub having: Option<Expr>,
    pub order_by: Vec<(Expr, bool)>,
    /// (offset, count)
    pub limit: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
pub(crate) struct Statement {
    pub explain: bool,
    pub select: Select,
}
