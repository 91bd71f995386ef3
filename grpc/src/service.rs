//! The `interstate.v1.Bus` service: each call becomes a [`Command`] for the bus thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::transport::server::UdsConnectInfo;
use tonic::{Request, Response, Status, Streaming};

use crate::bus::{BusHandle, Command, Peer, STREAM_CHANNEL};
use crate::pb;
use crate::pb::bus_server::Bus;

/// Changes a WatchMachines stream holds before it is found to have fallen behind.
const WATCH_CHANNEL: usize = 1024;

/// The service, cheap to clone (one per listener).
#[derive(Clone)]
pub struct BusService {
    bus: BusHandle,
    next_stream: Arc<AtomicU64>,
}

impl BusService {
    /// A service calling into the bus thread behind `bus`.
    pub fn new(bus: BusHandle) -> Self {
        BusService {
            bus,
            next_stream: Arc::new(AtomicU64::new(1)),
        }
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, Status>>) -> Command,
    ) -> Result<T, Status> {
        let (tx, rx) = oneshot::channel();
        self.bus.call(make(tx)).await?;
        rx.await.map_err(|_| crate::status::bus_gone())?
    }
}

/// Who made the call: the kernel's credentials of a Unix-socket peer, or a TCP peer's address.
fn peer<T>(request: &Request<T>) -> Peer {
    if let Some(info) = request.extensions().get::<UdsConnectInfo>() {
        if let Some(cred) = info.peer_cred {
            return Peer::Process {
                uid: cred.uid(),
                pid: cred.pid().unwrap_or(0),
            };
        }
        return Peer::Unknown;
    }
    match request.remote_addr() {
        Some(addr) => Peer::Remote(addr),
        None => Peer::Unknown,
    }
}

#[tonic::async_trait]
impl Bus for BusService {
    async fn send(
        &self,
        request: Request<pb::SendRequest>,
    ) -> Result<Response<pb::SendReply>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        self.ask(|answer| Command::Send { peer, req, answer })
            .await
            .map(Response::new)
    }

    async fn request(
        &self,
        request: Request<pb::RequestRequest>,
    ) -> Result<Response<pb::RequestReply>, Status> {
        let req = request.into_inner();
        self.ask(|answer| Command::Request { req, answer })
            .await
            .map(Response::new)
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishReply>, Status> {
        let peer = peer(&request);
        let req = request.into_inner();
        self.ask(|answer| Command::Publish { peer, req, answer })
            .await
            .map(Response::new)
    }

    type ReceiveStream = ReceiverStream<Result<pb::ReceiveResponse, Status>>;

    async fn receive(
        &self,
        request: Request<Streaming<pb::ReceiveRequest>>,
    ) -> Result<Response<Self::ReceiveStream>, Status> {
        let peer = peer(&request);
        let mut inbound = request.into_inner();
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        let (events, out) = mpsc::channel(STREAM_CHANNEL);
        let bus = self.bus.clone();
        tokio::spawn(async move {
            // The first message registers; anything else first is the client's mistake.
            let register = match inbound.next().await {
                Some(Ok(pb::ReceiveRequest {
                    kind: Some(pb::receive_request::Kind::Register(r)),
                })) => r,
                Some(Ok(_)) => {
                    let _ = events
                        .send(Err(Status::invalid_argument(
                            "the first message of a Receive stream must be a Register",
                        )))
                        .await;
                    return;
                }
                Some(Err(_)) | None => return,
            };
            let opened = bus
                .call(Command::Open {
                    stream,
                    peer,
                    register,
                    events: events.clone(),
                })
                .await;
            if let Err(status) = opened {
                let _ = events.send(Err(status)).await;
                return;
            }
            drop(events);
            while let Some(Ok(message)) = inbound.next().await {
                let command = match message.kind {
                    Some(pb::receive_request::Kind::Ack(a)) => Command::Ack {
                        stream,
                        delivery: a.delivery,
                    },
                    Some(pb::receive_request::Kind::Reply(reply)) => {
                        Command::Reply { stream, reply }
                    }
                    // A second Register, or an empty message: ignored (the ids are fixed
                    // for the stream's life).
                    _ => continue,
                };
                if bus.call(command).await.is_err() {
                    break;
                }
            }
            // The client closed its side (or the call broke): its ids leave the bus.
            bus.try_call(Command::Close { stream });
        });
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn list_machines(
        &self,
        _request: Request<pb::ListMachinesRequest>,
    ) -> Result<Response<pb::ListMachinesReply>, Status> {
        self.ask(|answer| Command::List { answer })
            .await
            .map(Response::new)
    }

    type WatchMachinesStream = ReceiverStream<Result<pb::MachineChange, Status>>;

    async fn watch_machines(
        &self,
        _request: Request<pb::WatchMachinesRequest>,
    ) -> Result<Response<Self::WatchMachinesStream>, Status> {
        let (changes, out) = mpsc::channel(WATCH_CHANNEL);
        self.bus.call(Command::Watch { changes }).await?;
        Ok(Response::new(ReceiverStream::new(out)))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusReply>, Status> {
        self.ask(|answer| Command::Status { answer })
            .await
            .map(Response::new)
    }
}
