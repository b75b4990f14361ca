//! Custom format templates (`wire::template::Template`), parsed from the configuration.
//!
//! Input: a template's text. A template that parses, written back from its parts with literal
//! braces doubled, must be the same text; rendering it must write exactly its literals
//! and the values of its placeholders.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use router::wire::template::{Part, Template, Vars};

const VARS: Vars<'static> = Vars {
    json: br#"{"id":"0-1","path":"/a","data":"<x>"}"#,
    data: br#""<x>""#,
    id: b"0-1",
    cb: b"parent.tunnel",
    tunnel: b"0-1-0123456789abcdef",
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let template = match Template::parse(text) {
        Ok(template) => template,
        Err(e) => {
            // Errors quote at most a bounded piece of the template.
            assert!(e.0.len() <= 400, "{} bytes of error", e.0.len());
            return;
        }
    };
    // Every accepted text is already in the one way of writing its parts.
    assert_eq!(write(&template), text);

    let mut out = BytesMut::new();
    template.render(&mut out, &VARS, false);
    let mut expected = Vec::new();
    for part in template.parts() {
        expected.extend_from_slice(match part {
            Part::Literal(bytes) => bytes,
            Part::Json => VARS.json,
            Part::Data => VARS.data,
            Part::Id => VARS.id,
            Part::Cb => VARS.cb,
            Part::Tunnel => VARS.tunnel,
        });
    }
    assert_eq!(&out[..], &expected[..]);
    assert!(template.literal_len() <= out.len());

    // Consecutive literals are merged, so no two are neighbours.
    assert!(!template
        .parts()
        .windows(2)
        .any(|w| matches!(w, [Part::Literal(_), Part::Literal(_)])));
});

/// The template's text, literal braces doubled.
fn write(template: &Template) -> String {
    let mut text = String::new();
    for part in template.parts() {
        match part {
            Part::Literal(bytes) => {
                let literal = std::str::from_utf8(bytes).expect("literals of a str are UTF-8");
                text.push_str(&literal.replace('{', "{{").replace('}', "}}"));
            }
            Part::Json => text.push_str("{json}"),
            Part::Data => text.push_str("{data}"),
            Part::Id => text.push_str("{id}"),
            Part::Cb => text.push_str("{cb}"),
            Part::Tunnel => text.push_str("{tunnel}"),
        }
    }
    text
}
