//! Subscription billing: packages (operators), merchants' customers, prepaid invoices, paying
//! them by hand or by QRIS, isolation, and the invoice run by hand.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use gema_gateway::billing::{self as domain, CustomerInput, PackageChanges, PackageInput};
use gema_store::billing::{
    CustomerFilter, CustomerStatus, InvoiceFilter, InvoiceStatus, PaymentMethod,
};

use crate::authz::{Caller, MerchantScope};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use crate::views::billing::{
    CreateCustomer, CreatePackage, Customer, CustomerEvent, CustomerHistory, CustomerQuery,
    CustomerStatusChange, Invoice, InvoiceDetail, InvoiceEvent, InvoiceQris, InvoiceQrisIssued,
    InvoiceQuery, InvoiceRun, InvoiceRunReport, Package, PackageQuery, PaidInvoice, PayInvoice,
    UnpayInvoice, UpdateCustomer, UpdatePackage, Webhook,
};
use crate::views::{Page, PageParams};

fn parse_status<T: Copy>(
    field: &'static str,
    value: Option<&str>,
    parse: fn(&str) -> Option<T>,
    allowed: &str,
) -> ApiResult<Option<T>> {
    value
        .map(|v| {
            parse(v).ok_or_else(|| ApiError::invalid_field(field, format!("is one of {allowed}")))
        })
        .transpose()
}

// ---- packages ---------------------------------------------------------------------------

#[utoipa::path(get, path = "/packages", tag = "billing", params(PackageQuery),
    responses((status = 200, body = Vec<Package>)))]
pub async fn packages(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<PackageQuery>,
) -> ApiResult<Json<Vec<Package>>> {
    let packages = state
        .billing
        .packages(query.include_inactive.unwrap_or(false))
        .await?;
    Ok(Json(packages.into_iter().map(Package::from).collect()))
}

#[utoipa::path(post, path = "/packages", tag = "billing", request_body = CreatePackage,
    responses((status = 201, body = Package), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn create_package(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CreatePackage>,
) -> ApiResult<(StatusCode, Json<Package>)> {
    let package = state
        .billing
        .create_package(PackageInput {
            name: body.name,
            speed: body.speed,
            description: body.description,
            price: body.price,
            active: body.active,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(package.into())))
}

#[utoipa::path(get, path = "/packages/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = Package), (status = 404, body = ErrorBody)))]
pub async fn package(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Package>> {
    Ok(Json(state.billing.package(&id).await?.into()))
}

#[utoipa::path(patch, path = "/packages/{id}", tag = "billing", params(("id" = String, Path)),
    request_body = UpdatePackage,
    responses((status = 200, body = Package), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_package(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdatePackage>,
) -> ApiResult<Json<Package>> {
    let package = state
        .billing
        .update_package(
            &id,
            PackageChanges {
                name: body.name,
                speed: body.speed,
                description: body.description,
                price: body.price,
                active: body.active,
            },
        )
        .await?;
    Ok(Json(package.into()))
}

#[utoipa::path(delete, path = "/packages/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody),
        (status = 409, description = "A customer or invoice has it (`package_in_use`); make it inactive", body = ErrorBody)))]
pub async fn delete_package(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    state.billing.delete_package(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- customers --------------------------------------------------------------------------

#[utoipa::path(get, path = "/customers", tag = "billing", params(PageParams, CustomerQuery),
    responses((status = 200, body = Page<Customer>), (status = 422, body = ErrorBody)))]
pub async fn customers(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<CustomerQuery>,
) -> ApiResult<Json<Page<Customer>>> {
    let filter = CustomerFilter {
        merchant_id: scope.apply(query.merchant_id)?,
        status: parse_status(
            "status",
            query.status.as_deref(),
            CustomerStatus::parse,
            "active, isolated, stopped",
        )?,
        package_id: query.package_id,
        billing_day: query.billing_day,
        search: query.q.filter(|q| !q.trim().is_empty()),
    };
    let page = state.billing.customers(filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(page, Customer::from)))
}

#[utoipa::path(post, path = "/customers", tag = "billing", request_body = CreateCustomer,
    responses((status = 201, body = Customer), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_customer(
    State(state): State<AppState>,
    Caller(caller): Caller,
    scope: MerchantScope,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> ApiResult<(StatusCode, Json<Customer>)> {
    let merchant_id = scope
        .apply(body.merchant_id)?
        .ok_or_else(|| ApiError::invalid_field("merchant_id", "names the customer's merchant"))?;
    let customer = state
        .billing
        .create_customer(
            CustomerInput {
                merchant_id,
                package_id: body.package_id,
                name: body.name,
                phone: body.phone,
                nik: body.nik,
                address: body.address,
                billing_day: body.billing_day,
                discount: body.discount,
                register_date: body.register_date,
                notes: body.notes,
            },
            &caller.actor,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(customer.into())))
}

#[utoipa::path(get, path = "/customers/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = Customer), (status = 404, body = ErrorBody)))]
pub async fn customer(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Customer>> {
    Ok(Json(state.billing.customer(&id).await?.into()))
}

#[utoipa::path(patch, path = "/customers/{id}", tag = "billing", params(("id" = String, Path)),
    request_body = UpdateCustomer,
    responses((status = 200, body = Customer), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_customer(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateCustomer>,
) -> ApiResult<Json<Customer>> {
    let changes = domain::CustomerChanges::from(body);
    if caller.merchant_id.is_some()
        && let Some(field) = changes.beyond_merchant_edits()
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("merchant users change a customer's phone and discount only, not {field}"),
        )
        .with_details(serde_json::json!({ "field": field })));
    }
    let customer = state
        .billing
        .update_customer(&id, changes, &caller.actor)
        .await?;
    Ok(Json(customer.into()))
}

#[utoipa::path(get, path = "/customers/{id}/history", tag = "billing",
    params(("id" = String, Path)),
    responses((status = 200, body = CustomerHistory), (status = 404, body = ErrorBody)))]
pub async fn customer_history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<CustomerHistory>> {
    let history = state.billing.customer_history(&id).await?;
    Ok(Json(CustomerHistory {
        events: history
            .events
            .into_iter()
            .map(CustomerEvent::from)
            .collect(),
        webhooks: history.webhooks.into_iter().map(Webhook::from).collect(),
    }))
}

async fn set_status(
    state: &AppState,
    actor: &str,
    id: &str,
    status: CustomerStatus,
    body: CustomerStatusChange,
) -> ApiResult<Json<Customer>> {
    let customer = state
        .billing
        .set_customer_status(id, status, body.reason.as_deref(), actor)
        .await?;
    Ok(Json(customer.into()))
}

#[utoipa::path(post, path = "/customers/{id}/isolate", tag = "billing",
    params(("id" = String, Path)), request_body = CustomerStatusChange,
    responses((status = 200, description = "Isolated (or already was); the merchant's isolation webhook is queued", body = Customer),
        (status = 404, body = ErrorBody)))]
pub async fn isolate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CustomerStatusChange>,
) -> ApiResult<Json<Customer>> {
    set_status(&state, &caller.actor, &id, CustomerStatus::Isolated, body).await
}

#[utoipa::path(post, path = "/customers/{id}/reactivate", tag = "billing",
    params(("id" = String, Path)), request_body = CustomerStatusChange,
    responses((status = 200, description = "Active again (a stopped customer too)", body = Customer),
        (status = 404, body = ErrorBody)))]
pub async fn reactivate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CustomerStatusChange>,
) -> ApiResult<Json<Customer>> {
    set_status(&state, &caller.actor, &id, CustomerStatus::Active, body).await
}

#[utoipa::path(post, path = "/customers/{id}/stop", tag = "billing",
    params(("id" = String, Path)), request_body = CustomerStatusChange,
    responses((status = 200, description = "Stopped: no more invoices", body = Customer),
        (status = 404, body = ErrorBody)))]
pub async fn stop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CustomerStatusChange>,
) -> ApiResult<Json<Customer>> {
    set_status(&state, &caller.actor, &id, CustomerStatus::Stopped, body).await
}

// ---- invoices ---------------------------------------------------------------------------

#[utoipa::path(get, path = "/invoices", tag = "billing", params(PageParams, InvoiceQuery),
    responses((status = 200, body = Page<Invoice>), (status = 422, body = ErrorBody)))]
pub async fn invoices(
    State(state): State<AppState>,
    scope: MerchantScope,
    ApiQuery(page): ApiQuery<PageParams>,
    ApiQuery(query): ApiQuery<InvoiceQuery>,
) -> ApiResult<Json<Page<Invoice>>> {
    let filter = InvoiceFilter {
        merchant_id: scope.apply(query.merchant_id)?,
        customer_id: query.customer_id,
        period: query
            .period
            .map(|p| domain::parse_period("period", &p))
            .transpose()?,
        status: parse_status(
            "status",
            query.status.as_deref(),
            InvoiceStatus::parse,
            "unpaid, paid",
        )?,
        due_date: query
            .due_date
            .map(|d| domain::parse_date("due_date", &d).map(domain::iso_date))
            .transpose()?,
    };
    let page = state.billing.invoices(filter, &page.to_request()?).await?;
    Ok(Json(Page::from_store(page, Invoice::from)))
}

#[utoipa::path(get, path = "/invoices/{id}", tag = "billing", params(("id" = String, Path)),
    responses((status = 200, body = InvoiceDetail), (status = 404, body = ErrorBody)))]
pub async fn invoice(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<InvoiceDetail>> {
    let invoice = state.billing.invoice(&id).await?;
    let events = state.billing.invoice_events(&id).await?;
    Ok(Json(InvoiceDetail {
        invoice: invoice.into(),
        events: events.into_iter().map(InvoiceEvent::from).collect(),
    }))
}

#[utoipa::path(post, path = "/invoices/{id}/pay", tag = "billing",
    params(("id" = String, Path)), request_body = PayInvoice,
    responses((status = 200, body = PaidInvoice), (status = 404, body = ErrorBody),
        (status = 409, description = "`stale_version` (someone else changed it: reload) or `already_paid`", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn pay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PayInvoice>,
) -> ApiResult<Json<PaidInvoice>> {
    let method = PaymentMethod::parse(&body.method)
        .filter(|m| *m != PaymentMethod::Qris)
        .ok_or_else(|| {
            ApiError::invalid_field(
                "method",
                "is cash or transfer (QRIS payments mark their invoice themselves)",
            )
        })?;
    let paid = state
        .billing
        .pay(
            &id,
            body.version,
            method,
            body.note.as_deref(),
            &caller.actor,
        )
        .await?;
    Ok(Json(paid.into()))
}

#[utoipa::path(post, path = "/invoices/{id}/unpay", tag = "billing",
    params(("id" = String, Path)), request_body = UnpayInvoice,
    responses((status = 200, body = Invoice), (status = 404, body = ErrorBody),
        (status = 409, description = "`stale_version`, `not_paid`, or `paid_by_qris` (refund the transaction instead)", body = ErrorBody)))]
pub async fn unpay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UnpayInvoice>,
) -> ApiResult<Json<Invoice>> {
    let invoice = state
        .billing
        .unpay(&id, body.version, body.note.as_deref(), &caller.actor)
        .await?;
    Ok(Json(invoice.into()))
}

#[utoipa::path(post, path = "/invoices/{id}/qris", tag = "billing",
    params(("id" = String, Path)), request_body = InvoiceQris,
    responses((status = 201, body = InvoiceQrisIssued), (status = 404, body = ErrorBody),
        (status = 409, description = "`already_paid`, `nothing_to_pay`, `no_static_qris`, `terminal_of_another_merchant`", body = ErrorBody)))]
pub async fn qris(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<InvoiceQris>,
) -> ApiResult<(StatusCode, Json<InvoiceQrisIssued>)> {
    if caller.merchant_id.is_some() {
        // A merchant user names only its own terminals (another merchant's is 404).
        crate::authz::owner_of_terminal(&state, &body.terminal_id)
            .await?
            .filter(|owner| Some(owner) == caller.merchant_id.as_ref())
            .ok_or_else(|| {
                ApiError::from(gema_gateway::GatewayError::NotFound {
                    entity: "terminal",
                    id: body.terminal_id.clone(),
                })
            })?;
    }
    let (transaction, payload) = state
        .billing
        .issue_qris(&id, &body.terminal_id, &caller.actor)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(InvoiceQrisIssued {
            invoice_id: id,
            payload,
            transaction: transaction.into(),
        }),
    ))
}

#[utoipa::path(post, path = "/billing/invoice-runs", tag = "billing", request_body = InvoiceRun,
    responses((status = 200, description = "The run's invoices (none new on a re-run)", body = InvoiceRunReport),
        (status = 422, body = ErrorBody)))]
pub async fn run_invoices(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<InvoiceRun>,
) -> ApiResult<Json<InvoiceRunReport>> {
    let date = match body.date.as_deref() {
        Some(date) => domain::parse_date("date", date)?,
        None => state.billing.today(),
    };
    let report = state
        .billing
        .generate(date, body.merchant_id.as_deref())
        .await?;
    Ok(Json(report.into()))
}
