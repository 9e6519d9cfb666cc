//! The `postgres` destination (reverse ETL) against a real PostgreSQL: mapped records upserted
//! by their key, a replay that never duplicates a row, a mapping fix plus replay that updates
//! them, and a constraint violation dead-lettered with the database's message.
//! Needs `FERRY_TEST_POSTGRES_URL` (e.g. `postgres://postgres@127.0.0.1:5432/test`); skips
//! with a reason without it.

mod common;

use common::*;
use tokio_postgres::NoTls;

fn pg_url() -> Option<String> {
    match std::env::var("FERRY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipped: FERRY_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
            );
            None
        }
    }
}

/// A schema of this test's own, with a `customers` table; dropped by the caller.
async fn fresh_schema(url: &str) -> (tokio_postgres::Client, String) {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("PostgreSQL is reachable");
    tokio::spawn(conn);
    let schema = format!("ferry_test_{}", uuid::Uuid::now_v7().simple());
    client
        .batch_execute(&format!(
            "CREATE SCHEMA {schema};
             CREATE TABLE {schema}.customers (
               id text PRIMARY KEY,
               email text NOT NULL,
               total_cents bigint CHECK (total_cents >= 0)
             );"
        ))
        .await
        .unwrap();
    (client, schema)
}

/// The flow's destination: the event mapped to a row (`cents` times `factor`).
fn pg_destination(schema: &str, factor: u32) -> String {
    format!(
        "      warehouse:\n        system: dst\n        postgres:\n          url: {{ file: pg-url }}\n          table: {schema}.customers\n          key: [id]\n          pool: 2\n          timeout: 5s\n        map: |\n          . = {{\"id\": .customer, \"email\": .email, \"total_cents\": int!(.cents) * {factor}}}\n        retry:\n          max_attempts: 3\n          initial_backoff: 50ms\n          max_backoff: 100ms\n"
    )
}

async fn rows(client: &tokio_postgres::Client, schema: &str) -> Vec<(String, String, i64)> {
    client
        .query(
            &format!("SELECT id, email, total_cents FROM {schema}.customers ORDER BY id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn records_are_upserted_replays_do_not_duplicate_and_a_mapping_fix_updates_them() {
    let Some(url) = pg_url() else { return };
    let (client, schema) = fresh_schema(&url).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(cfg.path().join("pg-url"), &url).unwrap();
    write_config(cfg.path(), &pg_destination(&schema, 1));
    let hub = start_hub(cfg.path(), data.path()).await;
    for (i, (customer, cents)) in [("c1", 100), ("c2", 250), ("c1", 300)].iter().enumerate() {
        let body = format!(
            r#"{{"type":"invoice.paid","customer":"{customer}","email":"{customer}@example.com","cents":{cents}}}"#
        );
        assert_eq!(
            send(hub.addr(), &format!("pg-{i}"), &body).await.status(),
            202
        );
    }
    wait_until(30, "three deliveries delivered", || async {
        deliveries(hub.addr(), "state=delivered").await.len() == 3
    })
    .await;
    // Two customers: c1's second invoice updated its row (the last one written wins).
    let got = rows(&client, &schema).await;
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1], ("c2".into(), "c2@example.com".into(), 250));

    // A replay writes the same rows again: no duplicates.
    replay_delivered_and_wait(hub.addr(), 3).await;
    assert_eq!(rows(&client, &schema).await.len(), 2);
    hub.shutdown().await.unwrap();

    // The mapping is fixed (amounts were meant in tenths of cents); a replay updates the rows.
    write_config(cfg.path(), &pg_destination(&schema, 10));
    let hub = start_hub(cfg.path(), data.path()).await;
    replay_delivered(hub.addr()).await;
    wait_until(30, "the rows rewritten", || async {
        let got = rows(&client, &schema).await;
        got.len() == 2
            && got
                .iter()
                .any(|r| r == &("c2".into(), "c2@example.com".into(), 2500))
    })
    .await;
    hub.shutdown().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_constraint_violation_is_dead_lettered_with_the_databases_message() {
    let Some(url) = pg_url() else { return };
    let (client, schema) = fresh_schema(&url).await;
    let cfg = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(cfg.path().join("pg-url"), &url).unwrap();
    write_config(cfg.path(), &pg_destination(&schema, 1));
    let hub = start_hub(cfg.path(), data.path()).await;
    let body = r#"{"type":"invoice.paid","customer":"c9","email":"c9@example.com","cents":-5}"#;
    assert_eq!(send(hub.addr(), "pg-neg", body).await.status(), 202);
    wait_until(30, "the delivery dead-lettered", || async {
        deliveries(hub.addr(), "state=dead").await.len() == 1
    })
    .await;
    let id = deliveries(hub.addr(), "state=dead").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = admin_get(hub.addr(), &format!("/admin/v1/deliveries/{id}")).await;
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "permanent: no retry");
    assert_eq!(
        attempts[0]["error_class"], "constraint_violation",
        "{shown}"
    );
    let error = attempts[0]["error"].as_str().unwrap();
    assert!(
        error.contains("23514") && error.contains("total_cents"),
        "{error}"
    );
    // The database's message quotes the row (`Failing row contains (…)`): it is kept as the
    // attempt's excerpt, out of the error the logs carry.
    assert!(!error.contains("c9@example.com"), "{error}");
    let excerpt = attempts[0]["response_excerpt"].as_str().unwrap_or_default();
    assert!(excerpt.contains("violates check constraint"), "{shown}");
    assert!(rows(&client, &schema).await.is_empty());
    hub.shutdown().await.unwrap();
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}
