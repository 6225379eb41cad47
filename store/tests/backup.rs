//! `gema_store::backup` on real SQLite files: a `VACUUM INTO` copy of a live store and the
//! figures a backup's manifest records.

use std::time::Duration;

use gema_store::backup::{sqlite_snapshot, sqlite_summary, sqlite_tables};
use gema_store::testing::{TempStore, approved_terminal, paid_transaction};

#[tokio::test]
async fn a_snapshot_of_a_live_file_has_the_rows_committed_before_it() {
    let live = TempStore::sqlite().await;
    let store = live.store.as_ref();
    let approved = approved_terminal(store, "BK1").await;
    paid_transaction(store, &approved.terminal.id, "ORD-BK-1", 25_000).await;
    let copy = live.dir().join("copy.db");
    let file = live.dir().join("gema.db");
    sqlite_snapshot(&file, &copy, Duration::from_secs(5))
        .await
        .unwrap();
    // Written after the copy: only in the live file.
    paid_transaction(store, &approved.terminal.id, "ORD-BK-2", 10_000).await;

    let copied = sqlite_summary(&copy).await.unwrap();
    assert!(copied.schema_version >= 13, "{copied:?}");
    assert_eq!(copied.row_counts["transactions"], 1);
    assert_eq!(copied.row_counts["ledger_entries"], 3);
    assert!(!copied.row_counts.contains_key("_sqlx_migrations"));
    let gross: Vec<_> = copied
        .ledger_totals
        .iter()
        .filter(|t| t.entry_type == "gross_income")
        .collect();
    assert_eq!(gross.len(), 1, "{copied:?}");
    assert_eq!((gross[0].entries, gross[0].amount), (1, 25_000));

    let now = sqlite_summary(&file).await.unwrap();
    assert_eq!(now.row_counts["transactions"], 2);
    assert_eq!(now.schema_version, copied.schema_version);
}

#[tokio::test]
async fn an_empty_file_has_no_tables_and_a_summary_of_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::File::create(&path).unwrap();
    assert!(sqlite_tables(&path).await.unwrap().is_empty());
    let figures = sqlite_summary(&path).await.unwrap();
    assert_eq!(figures.schema_version, 0);
    assert!(figures.row_counts.is_empty() && figures.ledger_totals.is_empty());
}
