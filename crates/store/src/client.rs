//! The network address of the request being served, for the audit log.
//!
//! The web layer runs each request inside [`scope`]; every audit event appended while it runs
//! (in the transaction of a change, or through the read-event writer, which stamps the event
//! before handing it to its own task) records that address, without each use case passing it
//! down. Outside a request (the command line, the outbox worker, the inbox reader) there is
//! none. The address is the TCP peer's, never a header the client wrote.

use std::future::Future;
use std::net::IpAddr;

tokio::task_local! {
    static CLIENT: Option<IpAddr>;
}

/// Runs `f` as work done for a request from `client`.
pub async fn scope<F: Future>(client: Option<IpAddr>, f: F) -> F::Output {
    CLIENT.scope(client, f).await
}

/// The address of the request being served, if any.
pub fn current() -> Option<IpAddr> {
    CLIENT.try_with(|c| *c).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_address_is_seen_only_inside_its_scope() {
        assert_eq!(current(), None);
        let addr: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(scope(Some(addr), async { current() }).await, Some(addr));
        assert_eq!(current(), None);
    }
}
