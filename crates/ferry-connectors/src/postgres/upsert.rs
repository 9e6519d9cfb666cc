//! The upsert statement of one record shape. Every name in it is a plain lowercase SQL name
//! (checked by `ferry validate` for the table and key, here for the record's fields), so no
//! identifier needs quoting and none can inject SQL; values travel as one `jsonb` parameter.

use ferry_config::connectors::identifier_problem;

/// `INSERT … SELECT … FROM jsonb_populate_record(…) ON CONFLICT (key) DO UPDATE …` for a
/// record with these `columns` (sorted, unique).
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
        "INSERT INTO {table} ({list}) SELECT {list} FROM jsonb_populate_record(NULL::{table}, $1::jsonb) \
         ON CONFLICT ({conflict}) {action}"
    )
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
             jsonb_populate_record(NULL::crm.customers, $1::jsonb) ON CONFLICT (id) DO UPDATE \
             SET email = EXCLUDED.email, total = EXCLUDED.total"
        );
        assert!(statement("t", &key, &["id"]).ends_with("ON CONFLICT (id) DO NOTHING"));
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
