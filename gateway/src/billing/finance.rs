//! Billing finance: collected and outstanding per merchant and period, revenue, the detail table and its exports.
//!
//! The seed's filters: a month (invoices whose period is that month), a year (periods in
//! that year, with a per-month breakdown) or a date (invoices due that day); a merchant or
//! all. Revenue counts what was paid in each Asia/Jakarta month (by `paid_at`), customer
//! growth counts customers by register date. Money is integer rupiah and the collected
//! share is computed with integers (basis points, and a one-decimal text for display);
//! no float touches any of it.

use gema_store::billing::InvoiceStatus;
use gema_store::{
    FinanceInvoice, FinanceInvoiceFilter, InvoiceSelection, Page, PageRequest, PeriodTotals,
};
use time::{Date, Month, OffsetDateTime, Time};

use super::Billing;
use crate::settlement::JAKARTA;
use crate::{GatewayError, GatewayResult};

/// Which invoices a finance figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinancePeriod {
    /// Invoices of this period (`YYYY-MM`).
    Month(i32, Month),
    /// Invoices of this year's periods.
    Year(i32),
    /// Invoices due this day.
    Date(Date),
}

impl FinancePeriod {
    /// From the query's `month=YYYY-MM`, `year=YYYY` or `date=YYYY-MM-DD` (at most one);
    /// none: `default`.
    pub fn parse(
        month: Option<&str>,
        year: Option<&str>,
        date: Option<&str>,
    ) -> GatewayResult<Option<FinancePeriod>> {
        match (month, year, date) {
            (None, None, None) => Ok(None),
            (Some(month), None, None) => parse_month(month)
                .map(|(y, m)| Some(FinancePeriod::Month(y, m)))
                .ok_or_else(|| GatewayError::invalid("month", "is YYYY-MM")),
            (None, Some(year), None) => crate::validate::fixed_digits::<i32>(year, 4)
                .filter(|y| *y >= 2000)
                .map(|y| Some(FinancePeriod::Year(y)))
                .ok_or_else(|| GatewayError::invalid("year", "is YYYY")),
            (None, None, Some(date)) => parse_date(date)
                .map(|d| Some(FinancePeriod::Date(d)))
                .ok_or_else(|| GatewayError::invalid("date", "is YYYY-MM-DD")),
            _ => Err(GatewayError::invalid(
                "month",
                "give one of month, year or date, not several",
            )),
        }
    }

    pub fn selection(self) -> InvoiceSelection {
        match self {
            FinancePeriod::Month(y, m) => {
                let period = period_text(y, m);
                InvoiceSelection::Periods {
                    from: period.clone(),
                    to: period,
                }
            }
            FinancePeriod::Year(y) => InvoiceSelection::Periods {
                from: format!("{y:04}-01"),
                to: format!("{y:04}-12"),
            },
            FinancePeriod::Date(d) => InvoiceSelection::DueDate(date_text(d)),
        }
    }

    /// `2026-12`, `2026` or `2026-12-03`.
    pub fn label(self) -> String {
        match self {
            FinancePeriod::Month(y, m) => period_text(y, m),
            FinancePeriod::Year(y) => format!("{y:04}"),
            FinancePeriod::Date(d) => date_text(d),
        }
    }
}

fn parse_month(text: &str) -> Option<(i32, Month)> {
    let (year, month) = text.split_once('-')?;
    let year = crate::validate::fixed_digits::<i32>(year, 4).filter(|y| *y >= 2000)?;
    let month = Month::try_from(crate::validate::fixed_digits::<u8>(month, 2)?).ok()?;
    Some((year, month))
}

fn parse_date(text: &str) -> Option<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).ok().filter(|_| text.len() == 10)
}

fn period_text(year: i32, month: Month) -> String {
    format!("{year:04}-{:02}", u8::from(month))
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The month `back` months before `(year, month)`.
fn months_before(year: i32, month: Month, back: u32) -> (i32, Month) {
    let index = i64::from(year) * 12 + i64::from(u8::from(month)) - 1 - i64::from(back);
    let year = i32::try_from(index.div_euclid(12)).unwrap_or(year);
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).unwrap_or(1))
        .unwrap_or(Month::January);
    (year, month)
}

/// The first instant of a Jakarta month.
fn month_start(year: i32, month: Month) -> OffsetDateTime {
    let day = Date::from_calendar_date(year, month, 1).unwrap_or(Date::MIN);
    day.with_time(Time::MIDNIGHT).assume_offset(JAKARTA)
}

/// `paid / billed` as basis points (rounded down) and as a one-decimal text (`87.5`), in
/// integers.
pub fn collected_share(paid: i64, billed: i64) -> (i64, String) {
    if billed <= 0 {
        return (0, "0.0".to_owned());
    }
    let paid = i128::from(paid.max(0));
    let billed = i128::from(billed);
    let basis_points = i64::try_from(paid * 10_000 / billed).unwrap_or(i64::MAX);
    let tenths = paid * 1_000 / billed;
    (basis_points, format!("{}.{}", tenths / 10, tenths % 10))
}

/// The figures of one selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinanceSummary {
    pub merchant_id: Option<String>,
    pub period: String,
    pub active_customers: i64,
    pub invoices: i64,
    pub billed: i64,
    pub paid_invoices: i64,
    pub paid: i64,
    pub unpaid_invoices: i64,
    pub unpaid: i64,
    pub collected_basis_points: i64,
    pub collected_percent: String,
    /// A year's months (every month, zeros included); empty for a month or a date.
    pub months: Vec<PeriodTotals>,
}

/// What was paid in one Jakarta month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthRevenue {
    pub month: String,
    pub paid_invoices: i64,
    pub paid: i64,
}

/// New customers of one month and the count so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonthGrowth {
    pub month: String,
    pub new_customers: i64,
    pub total_customers: i64,
}

impl Billing {
    fn this_month(&self) -> (i32, Month) {
        let now = self.clock.now_utc().to_offset(JAKARTA);
        (now.year(), now.month())
    }

    /// The figures of `period` (this Jakarta month when `None`).
    #[tracing::instrument(skip_all, fields(merchant_id = ?merchant_id))]
    pub async fn finance_summary(
        &self,
        merchant_id: Option<&str>,
        period: Option<FinancePeriod>,
    ) -> GatewayResult<FinanceSummary> {
        let period = period.unwrap_or_else(|| {
            let (y, m) = self.this_month();
            FinancePeriod::Month(y, m)
        });
        let totals = self
            .store
            .billing_period_totals(merchant_id, &period.selection())
            .await?;
        let active_customers = self
            .store
            .count_active_billing_customers(merchant_id)
            .await?;
        let sum = |f: fn(&PeriodTotals) -> i64| totals.iter().map(f).sum::<i64>();
        let (invoices, billed) = (sum(|t| t.invoices), sum(|t| t.billed));
        let (paid_invoices, paid) = (sum(|t| t.paid_invoices), sum(|t| t.paid));
        let (collected_basis_points, collected_percent) = collected_share(paid, billed);
        let months = match period {
            FinancePeriod::Year(y) => (1..=12u8)
                .filter_map(|n| Month::try_from(n).ok())
                .map(|m| {
                    let month = period_text(y, m);
                    totals
                        .iter()
                        .find(|t| t.period == month)
                        .cloned()
                        .unwrap_or(PeriodTotals {
                            period: month,
                            invoices: 0,
                            billed: 0,
                            paid_invoices: 0,
                            paid: 0,
                        })
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(FinanceSummary {
            merchant_id: merchant_id.map(str::to_owned),
            period: period.label(),
            active_customers,
            invoices,
            billed,
            paid_invoices,
            paid,
            unpaid_invoices: invoices - paid_invoices,
            unpaid: billed - paid,
            collected_basis_points,
            collected_percent,
            months,
        })
    }

    /// What was paid in each of the last `months` Jakarta months (this one included),
    /// oldest first, zeros included.
    #[tracing::instrument(skip_all, fields(merchant_id = ?merchant_id, months = months))]
    pub async fn finance_revenue(
        &self,
        merchant_id: Option<&str>,
        months: u32,
    ) -> GatewayResult<Vec<MonthRevenue>> {
        let months = check_months(months)?;
        let (year, month) = self.this_month();
        let mut out = Vec::with_capacity(months as usize);
        for back in (0..months).rev() {
            let (y, m) = months_before(year, month, back);
            let next = if m == Month::December {
                (y + 1, Month::January)
            } else {
                (y, m.next())
            };
            let (paid_invoices, paid) = self
                .store
                .billing_paid_between(merchant_id, month_start(y, m), month_start(next.0, next.1))
                .await?;
            out.push(MonthRevenue {
                month: period_text(y, m),
                paid_invoices,
                paid,
            });
        }
        Ok(out)
    }

    /// New customers in each of the last `months` months (by register date) and the
    /// running total, oldest first.
    #[tracing::instrument(skip_all, fields(merchant_id = ?merchant_id, months = months))]
    pub async fn finance_customer_growth(
        &self,
        merchant_id: Option<&str>,
        months: u32,
    ) -> GatewayResult<Vec<MonthGrowth>> {
        let months = check_months(months)?;
        let (year, month) = self.this_month();
        let (fy, fm) = months_before(year, month, months - 1);
        let from = format!("{}-01", period_text(fy, fm));
        let (mut total, counts) = self
            .store
            .billing_customer_growth(merchant_id, &from)
            .await?;
        let mut out = Vec::with_capacity(months as usize);
        for back in (0..months).rev() {
            let (y, m) = months_before(year, month, back);
            let label = period_text(y, m);
            let new_customers = counts
                .iter()
                .find(|c| c.month == label)
                .map_or(0, |c| c.count);
            total += new_customers;
            out.push(MonthGrowth {
                month: label,
                new_customers,
                total_customers: total,
            });
        }
        Ok(out)
    }

    /// The detail table: customer, package, amount, status, paid at, marked by.
    pub async fn finance_invoices(
        &self,
        merchant_id: Option<String>,
        period: Option<FinancePeriod>,
        status: Option<&str>,
        page: &PageRequest,
    ) -> GatewayResult<Page<FinanceInvoice>> {
        let status = match status {
            None => None,
            Some(s) => Some(
                InvoiceStatus::parse(s)
                    .ok_or_else(|| GatewayError::invalid("status", "is paid or unpaid"))?,
            ),
        };
        let filter = FinanceInvoiceFilter {
            merchant_id,
            selection: period.map(FinancePeriod::selection),
            status,
        };
        Ok(self.store.billing_finance_invoices(&filter, page).await?)
    }
}

fn check_months(months: u32) -> GatewayResult<u32> {
    if (1..=36).contains(&months) {
        Ok(months)
    } else {
        Err(GatewayError::invalid("months", "is 1 to 36"))
    }
}

/// Checks a billing export's period bounds (`YYYY-MM`, `from` not after `to`).
pub fn check_export_periods(from: Option<&str>, to: Option<&str>) -> GatewayResult<()> {
    for (field, value) in [("period_from", from), ("period_to", to)] {
        if let Some(value) = value
            && parse_month(value).is_none()
        {
            return Err(GatewayError::invalid(field, "is YYYY-MM"));
        }
    }
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(GatewayError::invalid(
            "period_to",
            "must not be before period_from",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_month_or_year_is_not_a_period() {
        for month in ["2026-+1", "+026-01"] {
            assert!(
                FinancePeriod::parse(Some(month), None, None).is_err(),
                "{month}"
            );
        }
        assert!(FinancePeriod::parse(None, Some("+202"), None).is_err());
        assert!(FinancePeriod::parse(None, None, Some("+2026-01-1")).is_err());
        assert_eq!(
            FinancePeriod::parse(Some("2026-01"), None, None).unwrap(),
            Some(FinancePeriod::Month(2026, Month::January))
        );
    }

    #[test]
    fn the_collected_share_is_integer_arithmetic() {
        assert_eq!(collected_share(0, 0), (0, "0.0".into()));
        assert_eq!(collected_share(70_000, 80_000), (8_750, "87.5".into()));
        assert_eq!(collected_share(1, 3), (3_333, "33.3".into()));
        assert_eq!(collected_share(80_000, 80_000), (10_000, "100.0".into()));
        assert_eq!(
            collected_share(i64::MAX, i64::MAX),
            (10_000, "100.0".into())
        );
    }

    #[test]
    fn months_count_back_across_years() {
        assert_eq!(
            months_before(2026, Month::March, 3),
            (2025, Month::December)
        );
        assert_eq!(
            months_before(2026, Month::December, 11),
            (2026, Month::January)
        );
        assert_eq!(
            months_before(2026, Month::January, 0),
            (2026, Month::January)
        );
    }

    proptest::proptest! {
        /// The finance pages' `month=`, `year=` and `date=` query parameters: an error or a
        /// period, never a panic, and a period's label reads back as the same period.
        #[test]
        fn period_query_parameters_never_panic(
            month in proptest::option::of(proptest::prop_oneof!["[0-9+-]{0,8}", "\\PC{0,10}"]),
            year in proptest::option::of(proptest::prop_oneof!["[0-9+-]{0,5}", "\\PC{0,6}"]),
            date in proptest::option::of(proptest::prop_oneof!["[0-9+-]{0,11}", "\\PC{0,12}"]),
        ) {
            let parsed = FinancePeriod::parse(month.as_deref(), year.as_deref(), date.as_deref());
            if let Ok(Some(period)) = parsed {
                let label = period.label();
                let again = match period {
                    FinancePeriod::Month(..) => FinancePeriod::parse(Some(&label), None, None),
                    FinancePeriod::Year(_) => FinancePeriod::parse(None, Some(&label), None),
                    FinancePeriod::Date(_) => FinancePeriod::parse(None, None, Some(&label)),
                };
                proptest::prop_assert_eq!(again.ok(), Some(Some(period)));
                let _ = period.selection();
            }
        }
    }

    #[test]
    fn one_period_filter_at_a_time() {
        assert_eq!(
            FinancePeriod::parse(Some("2026-12"), None, None).unwrap(),
            Some(FinancePeriod::Month(2026, Month::December))
        );
        assert!(FinancePeriod::parse(Some("2026-13"), None, None).is_err());
        assert!(FinancePeriod::parse(Some("2026-12"), Some("2026"), None).is_err());
        assert!(FinancePeriod::parse(None, None, Some("2026-02-30")).is_err());
        assert_eq!(
            FinancePeriod::parse(None, None, Some("2026-12-03"))
                .unwrap()
                .map(FinancePeriod::selection),
            Some(InvoiceSelection::DueDate("2026-12-03".into()))
        );
    }
}
