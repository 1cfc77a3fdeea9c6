//! Tokens of the whole `sql` text of one Query. The lexer never fails: a character it does not
//! know becomes an [`Tk::Bad`] token, so the parser reports it with the usual
//! `Parse error: ... near ... at line:col` message. Placeholders are found here, outside string
//! literals by construction, and numbered across all statements (spec 4.4).

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tk {
    /// Unquoted identifier or keyword, lower-cased.
    Ident(String),
    /// `` `quoted` `` identifier, verbatim.
    QIdent(String),
    Int(i64),
    Float(f64),
    Str(String),
    /// A placeholder: index into the bound values of the Query.
    Param(usize),
    Op(&'static str),
    Semi,
    Eof,
    /// Something that is not a token of the dialect, with the reason.
    Bad(&'static str),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tk: Tk,
    pub start: usize,
    pub end: usize,
    pub line: u32,
    pub col: u32,
}

/// A placeholder as written.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Placeholder {
    Index(i64),
    Name(String),
}

pub(crate) struct Lexed {
    pub tokens: Vec<Token>,
    pub placeholders: Vec<Placeholder>,
}

const OPS: &[&str] = &[
    "<=", ">=", "!=", "<>", "<<", ">>", "=", "<", ">", "!", "~", "&", "|", "^", "+", "-", "*", "/", "%", "(",
    ")", ",", ".",
];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

pub(crate) fn lex(src: &str) -> Lexed {
    let mut tokens = Vec::new();
    let mut placeholders = Vec::new();
    let mut it = src.char_indices().peekable();
    let (mut line, mut line_start) = (1u32, 0usize);
    // Column is counted in characters from the line start (0-based), as in the spec's example;
    // counted incrementally so a long single-line query stays linear.
    let (mut cpos, mut ccol) = (0usize, 0u32);
    let mut col_of = |line_start: usize, at: usize| {
        if cpos < line_start {
            (cpos, ccol) = (line_start, 0);
        }
        let n = src.get(cpos..at).map_or(0, |s| s.chars().count()) as u32;
        (cpos, ccol) = (at, ccol.saturating_add(n));
        ccol
    };
    let mut positional = 0i64;
    while let Some(&(start, c)) = it.peek() {
        if c == '\n' {
            it.next();
            line += 1;
            line_start = start + 1;
            continue;
        }
        if c.is_ascii_whitespace() {
            it.next();
            continue;
        }
        let (tline, tcol) = (line, col_of(line_start, start));
        let rest = src.get(start..).unwrap_or("");
        let tk;
        let end;
        if c.is_ascii_alphabetic() || c == '_' {
            end = start
                + rest
                    .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
                    .unwrap_or(rest.len());
            tk = Tk::Ident(src.get(start..end).unwrap_or("").to_ascii_lowercase());
        } else if c.is_ascii_digit() || (c == '.' && rest.as_bytes().get(1).is_some_and(u8::is_ascii_digit)) {
            let b = rest.as_bytes();
            let mut i = 0;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            let mut float = false;
            if b.get(i) == Some(&b'.') {
                float = true;
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                let mut j = i + 1;
                if matches!(b.get(j), Some(b'+' | b'-')) {
                    j += 1;
                }
                if b.get(j).is_some_and(u8::is_ascii_digit) {
                    float = true;
                    i = j;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                }
            }
            end = start + i;
            let text = src.get(start..end).unwrap_or("");
            tk = match (float, text.parse::<i64>()) {
                (false, Ok(v)) => Tk::Int(v),
                _ => text.parse::<f64>().map_or(Tk::Bad("invalid number"), Tk::Float),
            };
        } else if c == '\'' {
            let mut s = String::new();
            let mut chars = rest.char_indices().skip(1).peekable();
            let mut closed = None;
            while let Some((i, ch)) = chars.next() {
                match ch {
                    '\\' => match chars.next() {
                        Some((_, q @ ('\'' | '\\'))) => s.push(q),
                        // Other escapes stay as written so that LIKE sees `\%` and `\_`.
                        Some((_, o)) => {
                            s.push('\\');
                            s.push(o);
                        }
                        None => s.push('\\'),
                    },
                    '\'' => {
                        if chars.peek().map(|p| p.1) == Some('\'') {
                            chars.next();
                            s.push('\'');
                        } else {
                            closed = Some(i + 1);
                            break;
                        }
                    }
                    o => s.push(o),
                }
            }
            match closed {
                Some(e) => {
                    end = start + e;
                    tk = Tk::Str(s);
                }
                None => {
                    end = src.len();
                    tk = Tk::Bad("unterminated string literal");
                }
            }
            // Keep line numbers right after multi-line literals.
            for (i, ch) in src.get(start..end).unwrap_or("").char_indices() {
                if ch == '\n' {
                    line += 1;
                    line_start = start + i + 1;
                }
            }
        } else if c == '`' {
            match rest.get(1..).and_then(|r| r.find('`')) {
                Some(e) if e > 0 => {
                    end = start + e + 2;
                    tk = Tk::QIdent(rest.get(1..e + 1).unwrap_or("").to_string());
                }
                _ => {
                    end = start + 1;
                    tk = Tk::Bad("invalid quoted identifier");
                }
            }
        } else if c == '?' {
            end = start + 1;
            positional += 1;
            tk = Tk::Param(placeholders.len());
            placeholders.push(Placeholder::Index(positional));
        } else if c == ':' {
            let name_len = rest
                .get(1..)
                .map_or(0, |r| r.find(|ch| !is_name_char(ch)).unwrap_or(r.len()));
            if (1..=255).contains(&name_len) && rest.as_bytes().get(name_len + 1) == Some(&b':') {
                end = start + name_len + 2;
                tk = Tk::Param(placeholders.len());
                placeholders.push(Placeholder::Name(
                    rest.get(1..name_len + 1).unwrap_or("").to_string(),
                ));
            } else {
                end = start + 1;
                tk = Tk::Bad("unexpected character");
            }
        } else if c == ';' {
            end = start + 1;
            tk = Tk::Semi;
        } else if rest.starts_with("--") || rest.starts_with("/*") || c == '#' {
            // Comments are not part of the dialect: rejecting them keeps `1--1` unambiguous and
            // leaves no text the parser does not see.
            end = start + if c == '#' { 1 } else { 2 };
            tk = Tk::Bad("comments are not supported");
        } else if let Some(op) = OPS.iter().find(|o| rest.starts_with(**o)) {
            end = start + op.len();
            tk = Tk::Op(op);
        } else {
            end = start + c.len_utf8();
            tk = Tk::Bad("unexpected character");
        }
        tokens.push(Token {
            tk,
            start,
            end,
            line: tline,
            col: tcol,
        });
        while it.peek().is_some_and(|(i, _)| *i < end) {
            it.next();
        }
    }
    let (eline, ecol) = (line, col_of(line_start, src.len()));
    tokens.push(Token {
        tk: Tk::Eof,
        start: src.len(),
        end: src.len(),
        line: eline,
        col: ecol,
    });
    Lexed { tokens, placeholders }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(s: &str) -> Vec<Tk> {
        lex(s).tokens.into_iter().map(|t| t.tk).collect()
    }

    #[test]
    fn literals_and_placeholders() {
        let l = lex("select 'a?b:c:' , ? , :x.y: , 'it''s' , 'a\\'b\\\\c\\%'");
        assert_eq!(
            l.placeholders,
            vec![Placeholder::Index(1), Placeholder::Name("x.y".into())]
        );
        let ks: Vec<Tk> = l.tokens.into_iter().map(|t| t.tk).collect();
        assert!(ks.contains(&Tk::Str("a?b:c:".into())));
        assert!(ks.contains(&Tk::Str("it's".into())));
        assert!(ks.contains(&Tk::Str("a'b\\c\\%".into())));
    }

    #[test]
    fn numbers_and_ops() {
        assert_eq!(
            kinds("1.5 2 1e3 a<=b"),
            vec![
                Tk::Float(1.5),
                Tk::Int(2),
                Tk::Float(1000.0),
                Tk::Ident("a".into()),
                Tk::Op("<="),
                Tk::Ident("b".into()),
                Tk::Eof
            ]
        );
    }

    #[test]
    fn positions() {
        let l = lex("select\n  1, é x");
        let t: Vec<(u32, u32)> = l.tokens.iter().map(|t| (t.line, t.col)).collect();
        assert_eq!(t[0], (1, 0));
        assert_eq!(t[1], (2, 2));
        assert_eq!(t[3], (2, 5));
        assert_eq!(t[4], (2, 7));
    }
}
