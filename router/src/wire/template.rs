//! Parsed, sans-IO templates for custom tunnel formats (`{json}`, `{data}`, `{id}`, `{cb}`,
//! `{tunnel}`).

use bytes::{BufMut, Bytes, BytesMut};

/// One piece of a template: literal bytes or a placeholder filled at render time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(Bytes),
    /// `{json}`: the datagram JSON.
    Json,
    /// `{data}`: the published payload as it was published, unquoted: the raw bytes of a
    /// binary publish, the JSON text of the `data` value otherwise (empty for control datagrams).
    Data,
    /// `{id}`: the datagram id (empty for control datagrams).
    Id,
    /// `{cb}`: the callback name.
    Cb,
    /// `{tunnel}`: the tunnel id.
    Tunnel,
}

/// A template parsed once at configuration time, so rendering never re-scans the source string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("template: {0}")]
pub struct TemplateError(pub String);

/// Values substituted for the placeholders.
pub struct Vars<'a> {
    pub json: &'a [u8],
    pub data: &'a [u8],
    pub id: &'a [u8],
    pub cb: &'a [u8],
    pub tunnel: &'a [u8],
}

/// Longest placeholder name quoted back in an error, so a stray brace in a long template
/// does not produce a message the size of the template.
const ERROR_NAME_CHARS_MAX: usize = 40;

impl Template {
    /// Parses `s`. `{{` and `}}` are literal braces; any other brace must be part of a known
    /// placeholder. Backslash escapes are not processed: TOML has already done that.
    pub fn parse(s: &str) -> Result<Template, TemplateError> {
        let bytes = s.as_bytes();
        let mut parts = Vec::new();
        let mut literal: Vec<u8> = Vec::new();
        let mut i = 0;
        while let Some(&byte) = bytes.get(i) {
            match byte {
                b'{' if bytes.get(i + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    i += 2;
                }
                b'}' if bytes.get(i + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    i += 2;
                }
                b'{' => {
                    let rest = &s[i + 1..];
                    // A '{' before the closing '}' means an unescaped literal brace, e.g. `{"a":{json}}`;
                    // naming that whole span as a placeholder would mislead.
                    let close = rest
                        .find(['{', '}'])
                        .filter(|&at| rest.as_bytes().get(at) == Some(&b'}'));
                    let Some(close) = close else {
                        return Err(TemplateError(format!(
                            "unescaped '{{' at byte {i} (write '{{{{' for a literal brace)"
                        )));
                    };
                    let name = &rest[..close];
                    let part = match name {
                        "json" => Part::Json,
                        "data" => Part::Data,
                        "id" => Part::Id,
                        "cb" => Part::Cb,
                        "tunnel" => Part::Tunnel,
                        _ => {
                            let shown: String = name.chars().take(ERROR_NAME_CHARS_MAX).collect();
                            let more = if shown.len() < name.len() { "..." } else { "" };
                            return Err(TemplateError(format!(
                                "unknown placeholder '{{{shown}{more}}}' at byte {i} \
                                 (allowed: {{json}}, {{data}}, {{id}}, {{cb}}, {{tunnel}}; \
                                 write '{{{{' and '}}}}' for literal braces)"
                            )));
                        }
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(Bytes::from(std::mem::take(&mut literal))));
                    }
                    parts.push(part);
                    i += 1 + close + 1;
                }
                b'}' => {
                    return Err(TemplateError(format!(
                        "unescaped '}}' at byte {i} (write '}}}}' for a literal brace)"
                    )));
                }
                byte => {
                    literal.push(byte);
                    i += 1;
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(Bytes::from(literal)));
        }
        Ok(Template { parts })
    }

    /// A template built in code from its parts (a protocol adapter's fixed envelope).
    pub fn from_parts(parts: Vec<Part>) -> Template {
        Template { parts }
    }

    /// True when the template contains a part of the same kind as `part`; the content of a
    /// `Part::Literal` argument is ignored (it asks "has any literal").
    pub fn uses(&self, part: &Part) -> bool {
        let kind = std::mem::discriminant(part);
        self.parts.iter().any(|p| std::mem::discriminant(p) == kind)
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Appends the rendered template to `out`. When `html_escape`, every '<' inside {json} is
    /// written as \u003c.
    pub fn render(&self, out: &mut BytesMut, vars: &Vars<'_>, html_escape: bool) {
        out.reserve(self.rendered_len_hint(vars));
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => out.put_slice(bytes),
                Part::Json if html_escape => super::format::put_script_safe_json(out, vars.json),
                Part::Json => out.put_slice(vars.json),
                // Raw bytes: `html_escape` is for JSON in a script, which these need not be.
                Part::Data => out.put_slice(vars.data),
                Part::Id => out.put_slice(vars.id),
                Part::Cb => out.put_slice(vars.cb),
                Part::Tunnel => out.put_slice(vars.tunnel),
            }
        }
    }

    /// Bytes of literal parts (for sizing).
    pub fn literal_len(&self) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(bytes) => bytes.len(),
                _ => 0,
            })
            .sum()
    }

    /// Exact rendered length without escaping; one reserve instead of several regrowths.
    fn rendered_len_hint(&self, vars: &Vars<'_>) -> usize {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Literal(bytes) => bytes.len(),
                Part::Json => vars.json.len(),
                Part::Data => vars.data.len(),
                Part::Id => vars.id.len(),
                Part::Cb => vars.cb.len(),
                Part::Tunnel => vars.tunnel.len(),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Part {
        Part::Literal(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn render(template: &str, html_escape: bool) -> String {
        let vars = Vars {
            json: br#"{"a":"<b>"}"#,
            data: b"raw\0",
            id: b"42",
            cb: b"cb1",
            tunnel: b"t9",
        };
        let mut out = BytesMut::from(&b"pre:"[..]);
        Template::parse(template)
            .map(|t| t.render(&mut out, &vars, html_escape))
            .unwrap_or_else(|e| panic!("{template:?}: {e}"));
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }

    #[test]
    fn parses_all_placeholders() {
        let t = Template::parse("id: {id}\ndata: {json}\n{cb}/{tunnel}").unwrap();
        assert_eq!(
            t.parts(),
            &[
                lit("id: "),
                Part::Id,
                lit("\ndata: "),
                Part::Json,
                lit("\n"),
                Part::Cb,
                lit("/"),
                Part::Tunnel,
            ]
        );
    }

    #[test]
    fn doubled_braces_are_literal_and_merge_with_neighbours() {
        let t = Template::parse(r#"{{"event":{json}}}"#).unwrap();
        assert_eq!(t.parts(), &[lit(r#"{"event":"#), Part::Json, lit("}")]);
        let t = Template::parse("a{{b}}c").unwrap();
        assert_eq!(t.parts(), &[lit("a{b}c")]);
    }

    #[test]
    fn backslash_escapes_are_not_processed() {
        let t = Template::parse(r"{json}\n").unwrap();
        assert_eq!(t.parts(), &[Part::Json, lit(r"\n")]);
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = Template::parse("x{date}y").unwrap_err();
        assert!(err.0.contains("'{date}'"), "{err}");
        assert!(
            err.0.contains("{data}"),
            "the allowed ones are listed: {err}"
        );
        assert!(err.to_string().starts_with("template: "), "{err}");
        let err = Template::parse("{}").unwrap_err();
        assert!(err.0.contains("'{}'"), "{err}");
        let err = Template::parse("{ json }").unwrap_err();
        assert!(err.0.contains("'{ json }'"), "{err}");
        let long = format!("{{{}}}", "x".repeat(200));
        let err = Template::parse(&long).unwrap_err();
        assert!(err.0.len() < 200, "{err}");
    }

    #[test]
    fn stray_braces_are_refused() {
        for bad in ["{json", "abc{", r#"{"a":{json}}"#, "}", "a}b", "{json}}"] {
            let err = Template::parse(bad).unwrap_err();
            assert!(err.0.contains("unescaped"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn empty_template() {
        let t = Template::parse("").unwrap();
        assert!(t.is_empty());
        assert_eq!(t, Template::default());
        assert_eq!(render("", false), "pre:");
        assert_eq!(t.literal_len(), 0);
    }

    #[test]
    fn renders_and_appends() {
        assert_eq!(
            render("<script>p({json},'{id}','{cb}','{tunnel}')</script>", false),
            r#"pre:<script>p({"a":"<b>"},'42','cb1','t9')</script>"#
        );
    }

    #[test]
    fn html_escape_touches_only_json() {
        assert_eq!(
            render("<script>p({json})</script>", true),
            r#"pre:<script>p({"a":"\u003cb>"})</script>"#
        );
        assert_eq!(render("{json}", true), r#"pre:{"a":"\u003cb>"}"#);
        let t = Template::parse("{json}").unwrap();
        let mut out = BytesMut::new();
        let vars = Vars {
            json: b"<<",
            data: b"",
            id: b"",
            cb: b"",
            tunnel: b"",
        };
        t.render(&mut out, &vars, true);
        assert_eq!(&out[..], br"\u003c\u003c");
    }

    #[test]
    fn uses_and_literal_len() {
        let t = Template::parse("data: {json}\n\n").unwrap();
        assert!(t.uses(&Part::Json));
        assert!(!t.uses(&Part::Id));
        assert!(!t.uses(&Part::Cb));
        assert!(!t.uses(&Part::Tunnel));
        assert!(t.uses(&Part::Literal(Bytes::new())));
        assert_eq!(t.literal_len(), "data: ".len() + 2);
        assert!(!Template::parse("{id}").unwrap().uses(&lit("x")));
    }

    #[test]
    fn data_is_the_raw_payload_never_escaped() {
        let t = Template::parse("{data}\0").unwrap();
        assert_eq!(t.parts(), &[Part::Data, lit("\0")]);
        assert_eq!(
            render("<{data}|{json}>", true),
            "pre:<raw\0|{\"a\":\"\\u003cb>\"}>"
        );
    }

    #[test]
    fn non_ascii_literals_survive() {
        assert_eq!(render("é{id}→", false), "pre:é42→");
    }
}
