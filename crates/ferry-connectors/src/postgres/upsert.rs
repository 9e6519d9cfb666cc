//! The upsert statement of one record shape. Every name in it is a plain lowercase SQL name
//! (checked by `ferry validate` for the table and key, here for the record's fields), so no
//! identifier needs quoting and none can inject SQL; values travel as one `jsonb` parameter.

use ferry_config::connectors::identifier_problem;

/// `INSERT … SELECT … FROM jsonb_populate_recordset(…) ON CONFLICT (key) DO UPDATE …` for
/// records with these `columns` (sorted, unique), given as one JSON array: one statement for
/// all of them, which must have distinct keys ([`key_text`]).
pub(crate) fn statement(table: &str, key: &[String], columns: &[&str]) -> String {
    let list = columns.join(", ");
    let conflict = key.join(", ");
    let updates: Vec<String> = columns
        .iter()
        .filter(|c| !key.iter().any(|k| k == *c))
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let action = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_recordset(NULL::{table}, $1::jsonb) \
         ON CONFLICT ({conflict}) {action}"
    )
}

/// A record's key as the database may see it: each key field's text (a string's content, a
/// number's digits), so `"1"` and `1`, which a text or integer column makes one value, are
/// one key here too. Two records with one key cannot be in one statement (PostgreSQL refuses
/// to update a row twice in one `INSERT … ON CONFLICT`).
pub(crate) fn key_text(
    record: &serde_json::Map<String, serde_json::Value>,
    key: &[String],
) -> String {
    let mut out = String::new();
    for k in key {
        match record.get(k) {
            Some(serde_json::Value::String(s)) => out.push_str(s),
            Some(other) => out.push_str(&other.to_string()),
            None => {}
        }
        out.push('\u{0}');
    }
    out
}

/// The columns a record writes (its top-level fields, sorted), or why it cannot be written.
pub(crate) fn columns<'a>(
    record: &'a serde_json::Map<String, serde_json::Value>,
    key: &[String],
) -> Result<Vec<&'a str>, String> {
    let mut columns: Vec<&str> = record.keys().map(String::as_str).collect();
    columns.sort_unstable();
    if let Some(problem) = columns.iter().find_map(|c| identifier_problem(c)) {
        return Err(format!(
            "a field of the record is not a column name: {problem}"
        ));
    }
    if let Some(missing) = key.iter().find(|k| !columns.contains(&k.as_str())) {
        return Err(format!(
            "the record has no `{missing}`, a column of the conflict key (map the event so it does)"
        ));
    }
    Ok(columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_update_every_column_but_the_key() {
        let key = vec!["id".to_string()];
        assert_eq!(
            statement("crm.customers", &key, &["email", "id", "total"]),
            "INSERT INTO crm.customers (email, id, total) SELECT email, id, total FROM \
             jsonb_populate_recordset(NULL::crm.customers, $1::jsonb) ON CONFLICT (id) DO UPDATE \
             SET email = EXCLUDED.email, total = EXCLUDED.total"
        );
        assert!(statement("t", &key, &["id"]).ends_with("ON CONFLICT (id) DO NOTHING"));
    }

    #[test]
    fn keys_compare_as_the_database_would() {
        let key = vec!["id".to_string(), "region".to_string()];
        let record = |text: &str| -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_str(text).unwrap()
        };
        let a = key_text(&record(r#"{"id":"1","region":"eu","x":1}"#), &key);
        assert_eq!(
            a,
            key_text(&record(r#"{"id":1,"region":"eu","x":2}"#), &key)
        );
        assert_ne!(a, key_text(&record(r#"{"id":1,"region":"us"}"#), &key));
        // Field boundaries count: ("1", "2eu") is not ("12", "eu").
        assert_ne!(
            key_text(&record(r#"{"id":"1","region":"2eu"}"#), &key),
            key_text(&record(r#"{"id":"12","region":"eu"}"#), &key)
        );
    }

    #[test]
    fn hostile_or_incomplete_records_are_refused() {
        let key = vec!["id".to_string()];
        let record = |text: &str| -> serde_json::Map<String, serde_json::Value> {
            serde_json::from_str(text).unwrap()
        };
        assert_eq!(
            columns(&record(r#"{"id":1,"b":2,"a":3}"#), &key).unwrap(),
            ["a", "b", "id"]
        );
        let injected = record(r#"{"id":1,"x; DROP TABLE t":2}"#);
        assert!(
            columns(&injected, &key)
                .unwrap_err()
                .contains("not a column name")
        );
        assert!(
            columns(&record(r#"{"email":"a"}"#), &key)
                .unwrap_err()
                .contains("`id`")
        );
    }
}
