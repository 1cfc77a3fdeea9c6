//! Recursive-descent parser for exactly the dialect of spec 4.5. Anything outside it is a
//! `syntax_error`; other statement kinds get the spec's dedicated message.

use crate::ast::*;
use crate::lexer::{Tk, Token};
use crate::value::Value;

/// Nesting bound: each level costs ~13 stack frames (one per precedence level), so 64 levels stay
/// far below the 2 MiB of a Tokio worker thread even in a debug build.
const MAX_DEPTH: u32 = 64;
/// Tables in one FROM clause (the planner keeps a 64-bit mask of them).
pub(crate) const MAX_TABLES: usize = 64;

#[derive(Debug)]
pub(crate) enum ParseError {
    /// `Parse error: "<detail>" near "<token>" at <line>:<col>`.
    At {
        detail: String,
        near: String,
        line: u32,
        col: u32,
    },
    NotSelect,
}

impl ParseError {
    pub(crate) fn message(&self) -> String {
        match self {
            ParseError::At {
                detail,
                near,
                line,
                col,
            } => {
                format!("Parse error: \"{detail}\" near \"{near}\" at {line}:{col}")
            }
            ParseError::NotSelect => String::from("Only SELECT and EXPLAIN statements are supported."),
        }
    }
}

/// Words that start a statement of another kind.
const OTHER_STATEMENTS: &[&str] = &[
    "insert",
    "update",
    "delete",
    "drop",
    "create",
    "alter",
    "replace",
    "attach",
    "detach",
    "pragma",
    "truncate",
    "grant",
    "revoke",
    "set",
    "use",
    "begin",
    "commit",
    "rollback",
    "vacuum",
    "analyze",
    "reindex",
    "call",
    "do",
    "load",
    "lock",
    "unlock",
    "merge",
    "upsert",
    "show",
    "describe",
    "desc",
    "handler",
    "rename",
    "savepoint",
    "release",
    "start",
    "copy",
    "values",
    "table",
    "with",
    "prepare",
    "execute",
    "deallocate",
    "install",
    "kill",
    "flush",
    "reset",
    "optimize",
    "repair",
    "checkpoint",
    "import",
    "export",
    "comment",
    "listen",
    "notify",
    "discard",
    "refresh",
    "cluster",
    "end",
    "abort",
];

/// Reserved words: never a table, column or alias name unless quoted with backticks.
const RESERVED: &[&str] = &[
    "select",
    "from",
    "where",
    "group",
    "by",
    "having",
    "order",
    "asc",
    "desc",
    "limit",
    "offset",
    "as",
    "join",
    "inner",
    "cross",
    "left",
    "right",
    "outer",
    "natural",
    "on",
    "using",
    "and",
    "or",
    "xor",
    "not",
    "between",
    "is",
    "null",
    "like",
    "regexp",
    "in",
    "true",
    "false",
    "explain",
    "distinct",
    "union",
    "all",
    "with",
    "intersect",
    "except",
    "over",
    "window",
    "partition",
    "into",
    "exists",
    "case",
    "when",
    "then",
    "else",
    "end",
    "any",
    "some",
    "full",
    "straight_join",
    "for",
    "rlike",
    "escape",
    "collate",
    "interval",
    "div",
    "values",
    "lateral",
    "returning",
];

fn reserved(w: &str) -> bool {
    RESERVED.contains(&w)
}

pub(crate) struct Parser<'a> {
    src: &'a str,
    toks: &'a [Token],
    params: &'a [Value],
    pos: usize,
    depth: u32,
}

type PResult<T> = Result<T, ParseError>;

impl<'a> Parser<'a> {
    /// `toks` is one statement, ending with its `;` or end-of-text token.
    pub(crate) fn new(src: &'a str, toks: &'a [Token], params: &'a [Value]) -> Self {
        Parser {
            src,
            toks,
            params,
            pos: 0,
            depth: 0,
        }
    }

    fn peek(&self) -> &Tk {
        self.peek_at(0)
    }

    fn peek_at(&self, n: usize) -> &Tk {
        self.toks
            .get(self.pos + n)
            .or(self.toks.last())
            .map_or(&Tk::Eof, |t| &t.tk)
    }

    fn tok(&self) -> Option<&Token> {
        self.toks.get(self.pos).or(self.toks.last())
    }

    fn bump(&mut self) {
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
    }

    fn err<T>(&self, detail: &str) -> PResult<T> {
        let (near, line, col) = match self.tok() {
            Some(t) => {
                let near = match t.tk {
                    Tk::Eof => String::from("<EOF>"),
                    _ => {
                        let raw = self.src.get(t.start..t.end).unwrap_or("");
                        // A 1 MiB literal should not make a 1 MiB message.
                        let mut s: String = raw.chars().take(64).collect();
                        if raw.chars().nth(64).is_some() {
                            s.push_str("...");
                        }
                        s
                    }
                };
                (near, t.line, t.col)
            }
            None => (String::from("<EOF>"), 1, 0),
        };
        let detail = match self.tok().map(|t| &t.tk) {
            Some(Tk::Bad(d)) => (*d).to_string(),
            _ => detail.to_string(),
        };
        Err(ParseError::At {
            detail,
            near,
            line,
            col,
        })
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tk::Ident(w) if w == kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> PResult<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            self.err("unexpected token")
        }
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tk::Op(o) if *o == op)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if self.is_op(op) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn expect_op(&mut self, op: &str) -> PResult<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            self.err("unexpected token")
        }
    }

    fn enter(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            self.err("expression nested too deeply")
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn at_name(&self) -> bool {
        matches!(self.peek(), Tk::Ident(w) if !reserved(w)) || matches!(self.peek(), Tk::QIdent(_))
    }

    /// A table, column or alias name.
    fn name(&mut self) -> PResult<String> {
        match self.peek().clone() {
            Tk::Ident(w) if !reserved(&w) => {
                self.bump();
                Ok(w)
            }
            Tk::QIdent(w) => {
                self.bump();
                Ok(w)
            }
            _ => self.err("unexpected token"),
        }
    }

    pub(crate) fn statement(&mut self) -> PResult<Statement> {
        let explain = self.eat_kw("explain");
        match self.peek() {
            Tk::Ident(w) if w == "select" => {}
            Tk::Ident(w) if OTHER_STATEMENTS.contains(&w.as_str()) => return Err(ParseError::NotSelect),
            _ => return self.err("unexpected token"),
        }
        let select = self.select()?;
        match self.peek() {
            Tk::Semi | Tk::Eof => Ok(Statement { explain, select }),
            _ => self.err("unexpected token"),
        }
    }

    fn select(&mut self) -> PResult<Select> {
        self.expect_kw("select")?;
        let mut items = vec![self.item()?];
        while self.eat_op(",") {
            items.push(self.item()?);
        }
        let from = if self.eat_kw("from") {
            Some(self.table_refs()?)
        } else {
            None
        };
        let where_ = if self.eat_kw("where") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut group_by = Vec::new();
        if self.eat_kw("group") {
            self.expect_kw("by")?;
            group_by.push(self.expr()?);
            while self.eat_op(",") {
                group_by.push(self.expr()?);
            }
        }
        let having = if self.eat_kw("having") {
            Some(self.expr()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.eat_kw("order") {
            self.expect_kw("by")?;
            loop {
                let e = self.expr()?;
                let desc = if self.eat_kw("desc") {
                    true
                } else {
                    self.eat_kw("asc");
                    false
                };
                order_by.push((e, desc));
                if !self.eat_op(",") {
                    break;
                }
            }
        }
        let limit = if self.eat_kw("limit") {
            let a = self.limit_number()?;
            if self.eat_op(",") {
                Some((a, self.limit_number()?))
            } else if self.eat_kw("offset") {
                Some((self.limit_number()?, a))
            } else {
                Some((0, a))
            }
        } else {
            None
        };
        Ok(Select {
            items,
            from,
            where_,
            group_by,
            having,
            order_by,
            limit,
        })
    }

    fn limit_number(&mut self) -> PResult<u64> {
        let v = match self.peek() {
            Tk::Int(i) => Value::Int(*i),
            Tk::Param(p) => self.params.get(*p).cloned().unwrap_or(Value::Null),
            _ => return self.err("unexpected token"),
        };
        match v {
            Value::Int(i) if i >= 0 => {
                self.bump();
                Ok(i as u64)
            }
            _ => self.err("LIMIT needs a non-negative integer"),
        }
    }

    fn item(&mut self) -> PResult<Item> {
        if self.eat_op("*") {
            return Ok(Item::Star);
        }
        if self.at_name() && matches!(self.peek_at(1), Tk::Op(".")) && matches!(self.peek_at(2), Tk::Op("*"))
        {
            let t = self.name()?;
            self.bump();
            self.bump();
            return Ok(Item::TableStar(t));
        }
        let first = self.pos;
        let expr = self.expr()?;
        let text = self.text_of(first, self.pos);
        let alias = if self.eat_kw("as") || self.at_name() {
            Some(self.name()?)
        } else {
            None
        };
        Ok(Item::Expr { expr, alias, text })
    }

    /// Source text of tokens `[from, to)`, lower-cased outside string literals.
    fn text_of(&self, from: usize, to: usize) -> String {
        let mut out = String::new();
        let mut prev_end = None;
        for t in self.toks.get(from..to).unwrap_or(&[]) {
            if let Some(pe) = prev_end {
                out.push_str(self.src.get(pe..t.start).unwrap_or(""));
            }
            let raw = self.src.get(t.start..t.end).unwrap_or("");
            match t.tk {
                Tk::Str(_) | Tk::QIdent(_) => out.push_str(raw),
                _ => out.push_str(&raw.to_lowercase()),
            }
            prev_end = Some(t.end);
        }
        out
    }

    fn table_refs(&mut self) -> PResult<TableRef> {
        let mut left = self.table_ref()?;
        let mut n = 1;
        while self.eat_op(",") {
            n += 1;
            if n > MAX_TABLES {
                return self.err("too many tables");
            }
            let right = self.table_ref()?;
            left = TableRef::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind: JoinKind::Inner,
                cond: JoinCond::None,
            };
        }
        Ok(left)
    }

    fn table_primary(&mut self) -> PResult<TableRef> {
        if self.eat_op("(") {
            self.enter()?;
            let r = self.table_refs()?;
            self.expect_op(")")?;
            self.leave();
            return Ok(r);
        }
        let name = self.name()?;
        let alias = if self.eat_kw("as") || self.at_name() {
            Some(self.name()?)
        } else {
            None
        };
        Ok(TableRef::Table { name, alias })
    }

    fn table_ref(&mut self) -> PResult<TableRef> {
        let mut left = self.table_primary()?;
        let mut n = 0;
        loop {
            let (kind, natural, needs_cond) = if self.eat_kw("natural") {
                let kind = if self.eat_kw("left") {
                    self.eat_kw("outer");
                    JoinKind::Left
                } else if self.eat_kw("right") {
                    self.eat_kw("outer");
                    JoinKind::Right
                } else {
                    self.eat_kw("inner");
                    JoinKind::Inner
                };
                (kind, true, false)
            } else if self.eat_kw("left") {
                self.eat_kw("outer");
                (JoinKind::Left, false, true)
            } else if self.eat_kw("right") {
                self.eat_kw("outer");
                (JoinKind::Right, false, true)
            } else if self.eat_kw("inner") || self.eat_kw("cross") || self.is_kw("join") {
                (JoinKind::Inner, false, false)
            } else {
                return Ok(left);
            };
            self.expect_kw("join")?;
            n += 1;
            if n > MAX_TABLES {
                return self.err("too many tables");
            }
            let right = self.table_primary()?;
            let cond = if natural {
                JoinCond::Natural
            } else if self.eat_kw("on") {
                JoinCond::On(self.expr()?)
            } else if self.eat_kw("using") {
                self.expect_op("(")?;
                let mut cols = vec![self.name()?];
                while self.eat_op(",") {
                    cols.push(self.name()?);
                }
                self.expect_op(")")?;
                JoinCond::Using(cols)
            } else if needs_cond {
                return self.err("outer join needs ON or USING");
            } else {
                JoinCond::None
            };
            left = TableRef::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                cond,
            };
        }
    }

    pub(crate) fn expr(&mut self) -> PResult<Expr> {
        self.enter()?;
        let e = self.chain(0);
        self.leave();
        e
    }

    /// Binary levels, loosest first. Level 3 is the prefix NOT and 4 the predicates.
    fn chain(&mut self, level: usize) -> PResult<Expr> {
        let ops: &[(&str, BinOp)] = match level {
            0 => &[("or", BinOp::Or)],
            1 => &[("xor", BinOp::Xor)],
            2 => &[("and", BinOp::And)],
            3 => return self.not_expr(),
            4 => return self.predicate(),
            5 => &[("|", BinOp::BitOr)],
            6 => &[("&", BinOp::BitAnd)],
            7 => &[("<<", BinOp::Shl), (">>", BinOp::Shr)],
            8 => &[("+", BinOp::Add), ("-", BinOp::Sub)],
            9 => &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Mod)],
            10 => &[("^", BinOp::BitXor)],
            _ => return self.unary(),
        };
        let first = self.chain(level + 1)?;
        let mut rest = Vec::new();
        loop {
            let found = ops.iter().find(|(t, _)| match self.peek() {
                Tk::Ident(w) => w == t,
                Tk::Op(o) => o == t,
                _ => false,
            });
            let Some((_, op)) = found else { break };
            self.bump();
            rest.push((*op, self.chain(level + 1)?));
        }
        Ok(if rest.is_empty() {
            first
        } else {
            Expr::Chain(Box::new(first), rest)
        })
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.eat_kw("not") {
            self.enter()?;
            let e = self.not_expr()?;
            self.leave();
            return Ok(Expr::Unary(UnOp::Not, Box::new(e)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> PResult<Expr> {
        let mut left = self.chain(5)?;
        let mut cmp: Vec<(BinOp, Expr)> = Vec::new();
        let mut wraps = 0;
        let result = loop {
            let op = match self.peek() {
                Tk::Op("=") => Some(BinOp::Eq),
                Tk::Op("!=") | Tk::Op("<>") => Some(BinOp::Ne),
                Tk::Op("<") => Some(BinOp::Lt),
                Tk::Op("<=") => Some(BinOp::Le),
                Tk::Op(">") => Some(BinOp::Gt),
                Tk::Op(">=") => Some(BinOp::Ge),
                _ => None,
            };
            if let Some(op) = op {
                self.bump();
                cmp.push((op, self.chain(5)?));
                continue;
            }
            let is_pred = self.is_kw("is")
                || self.is_kw("between")
                || self.is_kw("like")
                || self.is_kw("regexp")
                || self.is_kw("in")
                || (self.is_kw("not")
                    && matches!(self.peek_at(1), Tk::Ident(w) if matches!(w.as_str(), "between" | "like" | "regexp" | "in")));
            if !is_pred {
                break Ok(());
            }
            if !cmp.is_empty() {
                left = Expr::Chain(Box::new(left), std::mem::take(&mut cmp));
            }
            wraps += 1;
            if let Err(e) = self.enter() {
                break Err(e);
            }
            let e = Box::new(std::mem::replace(&mut left, Expr::Lit(Value::Null)));
            if self.eat_kw("is") {
                let not = self.eat_kw("not");
                if let Err(e) = self.expect_kw("null") {
                    break Err(e);
                }
                left = Expr::IsNull { e, not };
                continue;
            }
            let not = self.eat_kw("not");
            let r = if self.eat_kw("between") {
                self.chain(5).and_then(|lo| {
                    self.expect_kw("and")?;
                    let hi = self.chain(5)?;
                    Ok(Expr::Between {
                        e,
                        lo: Box::new(lo),
                        hi: Box::new(hi),
                        not,
                    })
                })
            } else if self.eat_kw("like") {
                self.chain(5).map(|p| Expr::Like {
                    e,
                    pat: Box::new(p),
                    not,
                })
            } else if self.eat_kw("regexp") {
                self.chain(5).map(|p| Expr::Regexp {
                    e,
                    pat: Box::new(p),
                    not,
                })
            } else if self.eat_kw("in") {
                self.in_list().map(|list| Expr::In { e, list, not })
            } else {
                self.err("unexpected token")
            };
            match r {
                Ok(x) => left = x,
                Err(e) => break Err(e),
            }
        };
        for _ in 0..wraps {
            self.leave();
        }
        result?;
        Ok(if cmp.is_empty() {
            left
        } else {
            Expr::Chain(Box::new(left), cmp)
        })
    }

    fn in_list(&mut self) -> PResult<Vec<Expr>> {
        self.expect_op("(")?;
        let mut list = vec![self.expr()?];
        while self.eat_op(",") {
            list.push(self.expr()?);
        }
        self.expect_op(")")?;
        Ok(list)
    }

    fn unary(&mut self) -> PResult<Expr> {
        let op = match self.peek() {
            Tk::Op("-") => Some(UnOp::Neg),
            Tk::Op("+") => Some(UnOp::Plus),
            Tk::Op("~") => Some(UnOp::BitNot),
            Tk::Op("!") => Some(UnOp::Not),
            _ => None,
        };
        if let Some(op) = op {
            self.bump();
            self.enter()?;
            let e = self.unary()?;
            self.leave();
            // Fold `-<literal>` so `-9223372036854775808`-style literals and negative numbers stay literals.
            return Ok(match (op, e) {
                (UnOp::Neg, Expr::Lit(Value::Int(i))) if i != i64::MIN => Expr::Lit(Value::Int(-i)),
                (UnOp::Neg, Expr::Lit(Value::Float(f))) => Expr::Lit(Value::Float(-f)),
                (op, e) => Expr::Unary(op, Box::new(e)),
            });
        }
        self.primary()
    }

    fn primary(&mut self) -> PResult<Expr> {
        let tk = self.peek().clone();
        match tk {
            Tk::Int(i) => {
                self.bump();
                Ok(Expr::Lit(Value::Int(i)))
            }
            Tk::Float(f) => {
                self.bump();
                Ok(Expr::Lit(Value::Float(f)))
            }
            Tk::Str(s) => {
                self.bump();
                Ok(Expr::Lit(Value::from(s)))
            }
            Tk::Param(p) => {
                self.bump();
                Ok(Expr::Param(self.params.get(p).cloned().unwrap_or(Value::Null)))
            }
            Tk::Op("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tk::Ident(w) if w == "true" || w == "false" || w == "null" => {
                self.bump();
                Ok(Expr::Lit(match w.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => Value::Null,
                }))
            }
            Tk::Ident(w) if matches!(self.peek_at(1), Tk::Op("(")) && (!reserved(&w) || w == "join") => {
                self.bump();
                self.bump();
                self.enter()?;
                let mut args = Vec::new();
                let mut star = false;
                if w == "count" && self.is_op("*") {
                    self.bump();
                    star = true;
                } else if !self.is_op(")") {
                    args.push(self.expr()?);
                    while self.eat_op(",") {
                        args.push(self.expr()?);
                    }
                }
                self.expect_op(")")?;
                self.leave();
                Ok(Expr::Call { name: w, args, star })
            }
            Tk::Ident(_) | Tk::QIdent(_) => {
                let first = self.name()?;
                if self.eat_op(".") {
                    let col = self.name()?;
                    Ok(Expr::Column {
                        table: Some(first),
                        name: col,
                    })
                } else {
                    Ok(Expr::Column {
                        table: None,
                        name: first,
                    })
                }
            }
            _ => self.err("unexpected token"),
        }
    }
}
