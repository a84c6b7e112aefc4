//! Where a request came from: the TCP peer's address, from axum's `ConnectInfo` (the server is
//! started with `into_make_service_with_connect_info::<SocketAddr>()`). Never `X-Forwarded-For`,
//! `Forwarded` or `Host`: those are written by the client and prove nothing.
//!
//! [`ClientAddr`] is an extractor that cannot fail: `None` when there is no `ConnectInfo` (a
//! request sent in process, as the tests do). [`record_client`] runs every request inside
//! `caldicott_app::client::scope`, so each audit event written for it records the address
//! without any use case having to carry it.

use axum::extract::{ConnectInfo, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The client's network address, if the connection has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    /// The connection's address as axum recorded it (or as a test's `MockConnectInfo` gives it).
    pub(crate) fn of(extensions: &axum::http::Extensions) -> Self {
        let real = extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(a)| *a);
        let mock = || extensions.get::<axum::extract::connect_info::MockConnectInfo<SocketAddr>>().map(|m| m.0);
        Self(real.or_else(mock).map(|a| canonical(a.ip())))
    }

    /// The caller as the application counts tries at a credential.
    pub(crate) fn client(self) -> caldicott_app::auth::Client {
        caldicott_app::auth::Client { address: self.0 }
    }
}

/// The same address, in the form the application's credential checks take.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub caldicott_app::auth::Client);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(ClientAddr::of(&parts.extensions).client()))
    }
}

/// An IPv4 client reached over an IPv6 socket is recorded as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
    }
}

/// Middleware: the rest of the request runs with its client address in scope for the audit log.
pub async fn record_client(req: Request, next: Next) -> Response {
    let ClientAddr(addr) = ClientAddr::of(req.extensions());
    caldicott_app::client::scope(addr, next.run(req)).await
}
