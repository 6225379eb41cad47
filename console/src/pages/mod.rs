//! One module per screen. Each handler takes a [`Session`](crate::session::Session) (or a
//! [`Posted`](crate::session::Posted) form), asks the matrix, calls the gateway's services
//! and renders its template inside the [`Chrome`](crate::frame::Chrome): the header, the navigation a role may
//! use, the language and theme links.

pub mod audit;
pub mod billing;
pub mod billing_nav;
pub mod customer;
pub mod customer_form;
pub mod device;
pub mod devices;
pub mod invoices;
pub mod login;
pub mod merchants;
pub mod nodes;
pub mod overview;
pub mod packages;
pub mod people;
pub mod preferences;
pub mod receipt;
pub mod reconciliation;
pub mod settlement;
pub mod transactions;
pub mod whatsapp;
