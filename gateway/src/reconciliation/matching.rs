//! The matching rule, pure: report rows and the transactions they may name in, one row
//! per outcome out.
//!
//! A report row names its transaction by order reference first, then by the provider's
//! transaction id. Found: the amounts are compared first (`amount_mismatch`), then the
//! statuses as [`ReportStatus`] terms (`status_mismatch`; failed and expired are one term,
//! "not paid"), else `matched`. Not found: `missing_in_gema`. A second row for a
//! transaction an earlier row already named is malformed ("duplicate of line N"), so a
//! transaction is counted once. Then every transaction paid (or refunded) within the
//! period that no row named is `missing_in_report`, in id order.

use std::collections::{HashMap, HashSet};

use gema_store::{NewReconciliationRow, ReconcilableTransaction, ReconciliationOutcome};
use time::OffsetDateTime;

use super::report::{ReportRow, ReportStatus};

/// Matches `rows` against `known` (the transactions the rows' ids found) and `paid_in_period`
/// (candidates for `missing_in_report`, narrowed here by paid time to `period`).
pub fn reconcile(
    rows: &[ReportRow],
    known: &[ReconcilableTransaction],
    paid_in_period: &[ReconcilableTransaction],
    period: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Vec<NewReconciliationRow> {
    let by_order: HashMap<&str, &ReconcilableTransaction> =
        known.iter().map(|t| (t.order_ref.as_str(), t)).collect();
    let by_provider_id: HashMap<&str, &ReconcilableTransaction> = known
        .iter()
        .filter_map(|t| t.provider_transaction_id.as_deref().map(|id| (id, t)))
        .collect();
    let mut named: HashMap<&str, i64> = HashMap::with_capacity(rows.len());
    let mut out = Vec::with_capacity(rows.len() + 16);
    for row in rows {
        let mut new = NewReconciliationRow {
            line: Some(row.line),
            order_id: row.order_id.clone(),
            provider_transaction_id: row.provider_id.clone(),
            report_amount: row.amount,
            report_status: row.raw_status.clone(),
            report_paid_at: row.paid_at,
            gema_amount: None,
            gema_status: None,
            transaction_id: None,
            outcome: ReconciliationOutcome::Malformed,
            reason: row.malformed.clone(),
        };
        if row.malformed.is_some() {
            out.push(new);
            continue;
        }
        let found = row
            .order_id
            .as_deref()
            .and_then(|o| by_order.get(o))
            .or_else(|| {
                row.provider_id
                    .as_deref()
                    .and_then(|p| by_provider_id.get(p))
            })
            .copied();
        let Some(transaction) = found else {
            new.outcome = ReconciliationOutcome::MissingInGema;
            out.push(new);
            continue;
        };
        new.gema_amount = Some(transaction.amount);
        new.gema_status = Some(transaction.status.as_str().to_string());
        new.transaction_id = Some(transaction.id.clone());
        if let Some(first) = named.get(transaction.id.as_str()) {
            new.reason = Some(format!("duplicate of line {first}"));
            out.push(new);
            continue;
        }
        named.insert(transaction.id.as_str(), row.line);
        new.outcome = if row.amount != Some(transaction.amount) {
            ReconciliationOutcome::AmountMismatch
        } else if row.status != Some(ReportStatus::of_gema(transaction.status)) {
            ReconciliationOutcome::StatusMismatch
        } else {
            ReconciliationOutcome::Matched
        };
        out.push(new);
    }
    let Some((from, to)) = period else {
        return out;
    };
    let mut seen: HashSet<&str> = HashSet::new();
    for transaction in paid_in_period {
        let paid_in = transaction.paid_at.is_some_and(|at| from <= at && at <= to);
        if !paid_in
            || named.contains_key(transaction.id.as_str())
            || !seen.insert(transaction.id.as_str())
        {
            continue;
        }
        out.push(NewReconciliationRow {
            line: None,
            order_id: Some(transaction.order_ref.clone()),
            provider_transaction_id: transaction.provider_transaction_id.clone(),
            report_amount: None,
            report_status: None,
            report_paid_at: None,
            gema_amount: Some(transaction.amount),
            gema_status: Some(transaction.status.as_str().to_string()),
            transaction_id: Some(transaction.id.clone()),
            outcome: ReconciliationOutcome::MissingInReport,
            reason: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gema_store::TransactionStatus;

    fn transaction(
        id: &str,
        order: &str,
        amount: i64,
        status: TransactionStatus,
    ) -> ReconcilableTransaction {
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        ReconcilableTransaction {
            id: id.into(),
            order_ref: order.into(),
            provider: Some("midtrans".into()),
            provider_transaction_id: Some(format!("p-{id}")),
            amount,
            status,
            paid_at: Some(at),
            created_at: at,
        }
    }

    fn row(line: i64, order: &str, amount: i64, status: ReportStatus) -> ReportRow {
        ReportRow {
            line,
            order_id: Some(order.into()),
            provider_id: None,
            amount: Some(amount),
            raw_status: Some("settlement".into()),
            status: Some(status),
            paid_at: None,
            malformed: None,
        }
    }

    #[test]
    fn every_outcome_in_one_report() {
        use ReconciliationOutcome as O;
        let known = vec![
            transaction("t1", "A", 100, TransactionStatus::Paid),
            transaction("t2", "B", 100, TransactionStatus::Paid),
            transaction("t3", "C", 100, TransactionStatus::Expired),
        ];
        let mut by_provider = row(6, "unknown", 100, ReportStatus::Paid);
        by_provider.order_id = None;
        by_provider.provider_id = Some("p-t3".into());
        by_provider.status = Some(ReportStatus::NotPaid);
        let mut bad = row(7, "X", 1, ReportStatus::Paid);
        bad.malformed = Some("no amount".into());
        let rows = vec![
            row(2, "A", 100, ReportStatus::Paid),
            row(3, "B", 150, ReportStatus::Paid),
            row(4, "Z", 100, ReportStatus::Paid),
            row(5, "A", 100, ReportStatus::Paid),
            by_provider,
            bad,
        ];
        let in_period = vec![
            transaction("t1", "A", 100, TransactionStatus::Paid),
            transaction("t4", "D", 100, TransactionStatus::Paid),
        ];
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let out = reconcile(&rows, &known, &in_period, Some((at, at)));
        let outcomes: Vec<_> = out.iter().map(|r| (r.line, r.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![
                (Some(2), O::Matched),
                (Some(3), O::AmountMismatch),
                (Some(4), O::MissingInGema),
                (Some(5), O::Malformed),
                (Some(6), O::Matched),
                (Some(7), O::Malformed),
                (None, O::MissingInReport),
            ]
        );
        assert_eq!(out[3].reason.as_deref(), Some("duplicate of line 2"));
        assert_eq!(out[6].transaction_id.as_deref(), Some("t4"));
    }

    #[test]
    fn a_status_the_report_disagrees_with_is_a_status_mismatch() {
        let known = vec![transaction("t1", "A", 100, TransactionStatus::Pending)];
        let out = reconcile(&[row(2, "A", 100, ReportStatus::Paid)], &known, &[], None);
        assert_eq!(out[0].outcome, ReconciliationOutcome::StatusMismatch);
        assert_eq!(out[0].gema_status.as_deref(), Some("pending"));
    }
}
