//! Where a JSON pointer's value is written in a JSON text, as a 1-based line and column, so
//! problems inside a schema file can be shown at their place.

/// The 1-based line and column (in characters) where the value at `pointer` starts in
/// `text`, or where its deepest existing ancestor starts. `text` should be valid JSON; on
/// anything else the best position found so far is returned (never panics).
pub(crate) fn position(text: &str, pointer: &str) -> (usize, usize) {
    let tokens = tokens(pointer);
    let bytes = text.as_bytes();
    let mut at = skip_ws(bytes, 0);
    let mut found = at;
    for token in &tokens {
        match child(text, at, token) {
            Some(next) => {
                at = next;
                found = next;
            }
            None => break,
        }
    }
    line_column(text, found)
}

/// The decoded reference tokens of an RFC 6901 pointer (`~1` is `/`, `~0` is `~`).
pub(crate) fn tokens(pointer: &str) -> Vec<String> {
    pointer
        .split('/')
        .skip(1)
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect()
}

/// The offset of the member `token` of the object or array starting at `at`.
fn child(text: &str, at: usize, token: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    match bytes.get(at)? {
        b'{' => {
            let mut i = skip_ws(bytes, at + 1);
            loop {
                if *bytes.get(i)? != b'"' {
                    return None;
                }
                let end = string_end(bytes, i)?;
                let key: String = serde_json::from_str(text.get(i..end)?).ok()?;
                i = skip_ws(bytes, end);
                if *bytes.get(i)? != b':' {
                    return None;
                }
                i = skip_ws(bytes, i + 1);
                if key == token {
                    return Some(i);
                }
                i = skip_ws(bytes, value_end(bytes, i)?);
                if *bytes.get(i)? != b',' {
                    return None;
                }
                i = skip_ws(bytes, i + 1);
            }
        }
        b'[' => {
            let index: usize = token.parse().ok()?;
            let mut i = skip_ws(bytes, at + 1);
            for _ in 0..index {
                i = skip_ws(bytes, value_end(bytes, i)?);
                if *bytes.get(i)? != b',' {
                    return None;
                }
                i = skip_ws(bytes, i + 1);
            }
            (*bytes.get(i)? != b']').then_some(i)
        }
        _ => None,
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while bytes.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
        i += 1;
    }
    i
}

/// The offset just past the string starting (at its quote) at `at`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The offset just past the value starting at `at`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = at;
            while bytes
                .get(i)
                .is_some_and(|b| !b.is_ascii_whitespace() && !matches!(b, b',' | b'}' | b']'))
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"a/b\": { \"type\": \"string\" },\n    \"list\": [1, {\"x\": [2, \"é\", 3]}]\n  }\n}\n";

    #[test]
    fn finds_values_by_pointer() {
        assert_eq!(position(DOC, ""), (1, 1));
        assert_eq!(position(DOC, "/type"), (2, 11));
        assert_eq!(position(DOC, "/properties/a~1b/type"), (4, 22));
        assert_eq!(position(DOC, "/properties/list/1/x/2"), (5, 32));
    }

    #[test]
    fn falls_back_to_the_deepest_ancestor() {
        assert_eq!(position(DOC, "/properties/nope/type"), (3, 17));
        assert_eq!(position(DOC, "/properties/list/9"), (5, 13));
        assert_eq!(position("not json", "/a"), (1, 1));
        assert_eq!(position("{\"a\": \"unterminated", "/a/b"), (1, 7));
    }
}
