//! The comma-separated lines of `policy.csv` and `tests.csv`.
//!
//! Fields are separated by commas and trimmed. A field that contains a
//! comma (a certificate's subject DN, an officer named by DN) is enclosed in
//! double quotes, the way casbin's own CSV reader takes it, so a custom
//! model running on casbin sees the same fields as the default model's
//! index. A quoted field is taken as written (not trimmed) and cannot
//! contain a double quote itself; a quote anywhere else is an error, not
//! a character of the field.

/// Splits one line into its fields.
pub(crate) fn split_fields(line: &str) -> Result<Vec<&str>, String> {
    let b = line.as_bytes();
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let n = fields.len() + 1;
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i < b.len() && b[i] == b'"' {
            let Some(close) = line[i + 1..].find('"') else {
                return Err(format!("field {n}: the double quote is not closed"));
            };
            fields.push(&line[i + 1..i + 1 + close]);
            i += close + 2;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && b[i] != b',' {
                return Err(format!(
                    "field {n}: text after the closing double quote (a quoted field cannot contain a double quote)"
                ));
            }
        } else {
            let end = line[i..].find(',').map_or(b.len(), |e| i + e);
            let field = line[i..end].trim();
            if field.contains('"') {
                return Err(format!(
                    "field {n}: a double quote may only enclose a whole field"
                ));
            }
            fields.push(field);
            i = end;
        }
        if i >= b.len() {
            return Ok(fields);
        }
        i += 1; // the comma
    }
}

/// Writes fields back as one line (`, ` between them), quoting the ones
/// that need it.
pub(crate) fn join_fields<'a>(fields: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (k, f) in fields.into_iter().enumerate() {
        if k > 0 {
            out.push_str(", ");
        }
        if f.contains(',') || f.trim() != f {
            out.push('"');
            out.push_str(f);
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_quoted_fields() {
        assert_eq!(split_fields("p, a ,b,c").unwrap(), ["p", "a", "b", "c"]);
        assert_eq!(
            split_fields(r#"g, "CN=Anna Beispiel,O=Musterstadt,C=DE", officer, stadttor-admin"#)
                .unwrap(),
            [
                "g",
                "CN=Anna Beispiel,O=Musterstadt,C=DE",
                "officer",
                "stadttor-admin"
            ]
        );
        assert_eq!(split_fields(r#" "a" , "b,c""#).unwrap(), ["a", "b,c"]);
        assert_eq!(split_fields(r#""a b ",c"#).unwrap(), ["a b ", "c"]);
        assert_eq!(split_fields("a,,b").unwrap(), ["a", "", "b"]);
        assert_eq!(split_fields("a,").unwrap(), ["a", ""]);
        assert_eq!(split_fields(r#""""#).unwrap(), [""]);
    }

    #[test]
    fn misplaced_quotes_are_errors() {
        for (line, want) in [
            (r#"a, "b"#, "field 2: the double quote is not closed"),
            (r#"a, "b"c, d"#, "field 2: text after the closing"),
            (r#"a, b"c", d"#, "field 2: a double quote may only enclose"),
            (r#""a""b""#, "field 1: text after the closing"),
        ] {
            let e = split_fields(line).unwrap_err();
            assert!(e.starts_with(want), "{line}: {e}");
        }
    }

    #[test]
    fn join_quotes_what_split_needs_and_round_trips() {
        // casbin's reader would make an extra empty field of the spaces
        // after a closing quote; ours does not, and join never writes them.
        assert_eq!(split_fields(r#""a,b"  , c"#).unwrap(), ["a,b", "c"]);
        let fields = ["g", "CN=A,O=B", "officer", " spaced "];
        let line = join_fields(fields);
        assert_eq!(line, r#"g, "CN=A,O=B", officer, " spaced ""#);
        assert_eq!(split_fields(&line).unwrap(), fields);
    }

    #[test]
    fn casbin_reads_quoted_fields_the_same_way() {
        // The custom-model path hands the text to casbin's StringAdapter;
        // its reader must agree with ours on every field.
        use casbin::prelude::*;
        let model = "[request_definition]\nr = sub, obj\n[policy_definition]\np = sub, obj\n\
                     [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\n\
                     m = r.sub == p.sub && r.obj == p.obj\n";
        let policy = "p, \"CN=Anna,O=Musterstadt\", \"/a,b\"\np, plain, /c\n";
        let e = crate::engine::block_on(async {
            let m = DefaultModel::from_str(model).await.unwrap();
            Enforcer::new(m, StringAdapter::new(policy.to_string()))
                .await
                .unwrap()
        });
        for line in policy.lines() {
            let f = split_fields(line).unwrap();
            assert!(e.enforce((f[1], f[2])).unwrap(), "{line}");
        }
        assert!(!e.enforce(("\"CN=Anna", "O=Musterstadt\"")).unwrap());
    }
}
