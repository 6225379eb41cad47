//! Fresh, migrated databases for the suite.

use std::sync::Arc;

use gema_store::Store;

/// A store and whatever keeps its database alive for the test's duration.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    /// The database's URL, for a test that changes the schema under the store.
    pub url: String,
    _dir: Option<gema_store::testing::TempStore>,
}

pub async fn sqlite() -> TestDb {
    let temp = gema_store::testing::TempStore::sqlite().await;
    TestDb {
        store: temp.store.clone(),
        url: temp.url.clone(),
        _dir: Some(temp),
    }
}

#[cfg(feature = "postgres-tests")]
pub async fn postgres() -> TestDb {
    let admin_url = std::env::var("GEMA_TEST_POSTGRES_URL").expect(
        "GEMA_TEST_POSTGRES_URL must name a PostgreSQL cluster for the postgres-tests \
         feature; run the tests through scripts/with-postgres",
    );
    let url = gema_store::testing::fresh_postgres_database(&admin_url).await;
    let store = gema_store::connect(&url, &gema_store::ConnectOptions::default())
        .await
        .expect("connect to test database");
    store.migrate().await.expect("migrate postgres");
    TestDb {
        store,
        url,
        _dir: None,
    }
}
