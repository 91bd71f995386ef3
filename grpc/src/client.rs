//! A tonic client of the gateway over its Unix socket (the tests and the bench use it; any
//! Rust program can).

use std::path::PathBuf;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::pb::bus_client::BusClient;

/// Connects to the gateway listening on the Unix socket `path`.
pub async fn connect_unix(
    path: impl Into<PathBuf>,
) -> Result<BusClient<Channel>, tonic::transport::Error> {
    let path = Arc::new(path.into());
    // The URI is required by the API and not used: the connector opens the socket.
    let channel = Endpoint::from_static("http://localhost")
        .connect_with_connector(service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(&*path).await?)) }
        }))
        .await?;
    Ok(BusClient::new(channel))
}
