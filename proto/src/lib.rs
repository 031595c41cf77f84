//! The gRPC contracts of every Car ERP domain service, generated from `carerp/**.proto`.

/// Encoded `FileDescriptorSet` of every contract, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carerp_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("carerp.common.v1");
    }
}

pub mod customer {
    pub mod v1 {
        tonic::include_proto!("carerp.customer.v1");
    }
}

pub mod workorder {
    pub mod v1 {
        tonic::include_proto!("carerp.workorder.v1");
    }
}

pub mod inventory {
    pub mod v1 {
        tonic::include_proto!("carerp.inventory.v1");
    }
}

pub mod billing {
    pub mod v1 {
        tonic::include_proto!("carerp.billing.v1");
    }
}

pub mod identity {
    pub mod v1 {
        tonic::include_proto!("carerp.identity.v1");
    }
}
