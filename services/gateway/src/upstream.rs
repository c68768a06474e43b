//! The services the gateway calls: one tonic channel per gRPC service of the contract (in `up`
//! every service shares one address), each call a dynamic message with the caller's bearer
//! token in its metadata, in a client span whose context goes along (`traceparent`).

use std::collections::HashMap;

use chassis::telemetry::{GrpcClientTraceLayer, GrpcClientTraceService};
use contract::grpc::DynamicCodec;
use prost_reflect::{DynamicMessage, MethodDescriptor};
use tonic::transport::Channel;

/// Where each service's calls go.
#[derive(Clone, Debug, Default)]
pub struct Upstream {
    /// By the service's full name, `emporium.catalog.v1.CatalogService`.
    channels: HashMap<String, GrpcClientTraceService<Channel>>,
}

impl Upstream {
    pub fn new() -> Upstream {
        Upstream::default()
    }

    /// Sends the calls of `service` (its full name) over `channel`.
    pub fn with_service(mut self, service: impl Into<String>, channel: Channel) -> Upstream {
        self.channels
            .insert(service.into(), GrpcClientTraceLayer::wrap(channel));
        self
    }

    /// Sends the calls of every service of the contract over `channel` (the suite's one port).
    pub fn with_every_service(
        mut self,
        pool: &prost_reflect::DescriptorPool,
        channel: &Channel,
    ) -> Upstream {
        for service in pool.services() {
            self.channels.insert(
                service.full_name().to_owned(),
                GrpcClientTraceLayer::wrap(channel.clone()),
            );
        }
        self
    }

    /// Calls `method` with `request`, sending `token` as the bearer token when there is one.
    pub async fn call(
        &self,
        method: &MethodDescriptor,
        request: DynamicMessage,
        token: Option<&str>,
    ) -> Result<DynamicMessage, tonic::Status> {
        let service = method.parent_service();
        let channel = self.channels.get(service.full_name()).ok_or_else(|| {
            tonic::Status::unavailable(format!(
                "the gateway has no address for {}",
                service.full_name()
            ))
        })?;
        let mut client = tonic::client::Grpc::new(channel.clone());
        client
            .ready()
            .await
            .map_err(|error| tonic::Status::unavailable(error.to_string()))?;
        let path = http::uri::PathAndQuery::try_from(format!(
            "/{}/{}",
            service.full_name(),
            method.name()
        ))
        .map_err(|error| tonic::Status::internal(error.to_string()))?;
        let mut request = tonic::Request::new(request);
        if let Some(token) = token {
            let value = format!("Bearer {token}").parse().map_err(|_| {
                tonic::Status::unauthenticated("the bearer token is not a valid header value")
            })?;
            request.metadata_mut().insert("authorization", value);
        }
        let response = client
            .unary(request, path, DynamicCodec::new(method.output()))
            .await?;
        Ok(response.into_inner())
    }
}
