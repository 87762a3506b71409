//! Generated Rust for every Pillivery contract in `proto/`, and the descriptor set they were
//! compiled from.
//!
//! The descriptor set is what makes the gateway generic: it reads each RPC's `google.api.http`
//! binding and `pillivery.api.v1.method` policy from it at start, instead of a handler per route.
#![forbid(unsafe_code)]
#![allow(clippy::all, missing_docs)]

use std::sync::OnceLock;

/// The encoded `google.protobuf.FileDescriptorSet` of every contract (with its imports).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/pillivery_descriptor.bin"));

/// The decoded descriptor pool, built once.
pub fn descriptor_pool() -> &'static prost_reflect::DescriptorPool {
    static POOL: OnceLock<prost_reflect::DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        prost_reflect::DescriptorPool::decode(FILE_DESCRIPTOR_SET)
            .expect("the descriptor set compiled by build.rs decodes")
    })
}

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

pub mod pillivery {
    pub mod api {
        pub mod v1 {
            tonic::include_proto!("pillivery.api.v1");
        }
    }
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("pillivery.catalog.v1");
        }
    }
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("pillivery.events.v1");
        }
    }
    pub mod order {
        pub mod v1 {
            tonic::include_proto!("pillivery.order.v1");
        }
    }
    pub mod payment {
        pub mod v1 {
            tonic::include_proto!("pillivery.payment.v1");
        }
    }
    pub mod scheduler {
        pub mod v1 {
            tonic::include_proto!("pillivery.scheduler.v1");
        }
    }
    pub mod user {
        pub mod v1 {
            tonic::include_proto!("pillivery.user.v1");
        }
    }
}

pub use pillivery::api::v1 as api;
pub use pillivery::catalog::v1 as catalog;
pub use pillivery::events::v1 as events;
pub use pillivery::order::v1 as order;
pub use pillivery::payment::v1 as payment;
pub use pillivery::scheduler::v1 as scheduler;
pub use pillivery::user::v1 as user;
