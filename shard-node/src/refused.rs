//! The Shard service of a process whose store was refused at open (damaged): it stays up, so
//! that grpc.health.v1 can say NOT_SERVING and the log says why, and answers every call
//! UNAVAILABLE with the reason, which routers take as a replica down (reads go to another,
//! writes mark it stale).

use proto::v1::shard_server::Shard as ShardRpc;
use proto::v1::{
    DeleteRequest, DeleteResponse, ExportRequest, ExportResponse, GetRequest, GetResponse, ListRequest, ListResponse,
    ListVersionsResponse, RetrainRequest, RetrainResponse, ShardSearchRequest, ShardSearchResponse, ShardStats,
    ShardUpsertRequest, StatsRequest, UpsertResponse,
};
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct Refused {
    pub reason: String,
}

impl Refused {
    fn answer<T>(&self) -> Result<Response<T>, Status> {
        Err(Status::unavailable(format!("this shard's store was refused at open: {}", self.reason)))
    }
}

#[tonic::async_trait]
impl ShardRpc for Refused {
    async fn search(&self, _: Request<ShardSearchRequest>) -> Result<Response<ShardSearchResponse>, Status> {
        self.answer()
    }
    async fn upsert(&self, _: Request<ShardUpsertRequest>) -> Result<Response<UpsertResponse>, Status> {
        self.answer()
    }
    async fn delete(&self, _: Request<DeleteRequest>) -> Result<Response<DeleteResponse>, Status> {
        self.answer()
    }
    async fn get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        self.answer()
    }
    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<ShardStats>, Status> {
        self.answer()
    }
    async fn list(&self, _: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        self.answer()
    }
    async fn export(&self, _: Request<ExportRequest>) -> Result<Response<ExportResponse>, Status> {
        self.answer()
    }
    async fn list_versions(&self, _: Request<ListRequest>) -> Result<Response<ListVersionsResponse>, Status> {
        self.answer()
    }
    async fn retrain(&self, _: Request<RetrainRequest>) -> Result<Response<RetrainResponse>, Status> {
        self.answer()
    }
}
