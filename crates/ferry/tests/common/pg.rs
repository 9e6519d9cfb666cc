//! A schema of the PostgreSQL test database (`FERRY_TEST_POSTGRES_URL`) for one test, and
//! config dirs whose store is that schema.

use std::path::Path;

use super::{TestReceiver, http_destination, write_config};

/// A schema of the test database for one test, dropped at the end.
pub struct Schema {
    pub url: String,
    pub name: String,
}

impl Schema {
    pub fn new() -> Option<Schema> {
        let Ok(url) = std::env::var("FERRY_TEST_POSTGRES_URL") else {
            eprintln!("skipped: FERRY_TEST_POSTGRES_URL is not set (a PostgreSQL URL)");
            return None;
        };
        Some(Schema {
            url,
            name: format!("ferry_hub_{}", uuid::Uuid::now_v7().simple()),
        })
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to the test database");
        tokio::spawn(conn);
        client
    }

    /// A config dir whose store is this schema: the URL from a file, as a secret.
    pub fn configure(&self, dir: &Path, receiver: &TestReceiver) {
        self.configure_with(dir, &http_destination("crm", &receiver.url("/hook"), 5));
    }

    /// [`Schema::configure`] with these destinations.
    pub fn configure_with(&self, dir: &Path, destinations: &str) {
        write_config(dir, destinations);
        std::fs::write(dir.join("store-url"), &self.url).unwrap();
        let settings = std::fs::read_to_string(dir.join("ferry.yaml")).unwrap();
        let settings = settings.replacen(
            "settings:\n",
            &format!(
                "settings:\n  store:\n    postgres: {{ url: {{ file: store-url }}, schema: {} }}\n",
                self.name
            ),
            1,
        );
        std::fs::write(dir.join("ferry.yaml"), settings).unwrap();
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}
