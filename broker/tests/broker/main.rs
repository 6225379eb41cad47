//! End-to-end tests of the broker over real loopback sockets and real TLS.

mod acl_matrix;
mod helpers;
mod hostile;
mod interface;
mod interop;
mod mtls;
mod presence;
mod sessions;
mod settle;
mod stock_clients;
mod tls_versions;
