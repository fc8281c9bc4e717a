//! ApiVersions: the advertised ranges from [`crate::protocol::versions::SUPPORTED`] and the feature levels of
//! [`crate::protocol::versions::FEATURES`] (v3+), supported and finalized alike: a single broker's features
//! are final from its first start.

use bytes::{BufMut, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::Encodable;

use super::RequestContext;
use crate::protocol::versions::{FEATURES, SUPPORTED};

fn response() -> ApiVersionsResponse {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = SUPPORTED
        .iter()
        .map(|a| {
            let mut v = ApiVersion::default();
            v.api_key = a.key as i16;
            v.min_version = a.advertised_min;
            v.max_version = a.max;
            v
        })
        .collect();
    for f in FEATURES {
        let mut sup = SupportedFeatureKey::default();
        sup.name = super::s(f.name);
        sup.min_version = f.min;
        sup.max_version = f.max;
        r.supported_features.push(sup);
        let mut fin = FinalizedFeatureKey::default();
        fin.name = super::s(f.name);
        fin.min_version_level = f.max;
        fin.max_version_level = f.max;
        r.finalized_features.push(fin);
    }
    // Never changes; clients keep the answer with the highest epoch.
    r.finalized_features_epoch = 1;
    r
}

/// Answers ApiVersions.
pub async fn handle(_: &RequestContext, _: ApiVersionsRequest) -> Option<ApiVersionsResponse> {
    Some(response())
}

/// The KIP-511 answer to an ApiVersions request in a version we do not speak: header v0, body v0 with
/// UNSUPPORTED_VERSION and our ranges.
pub fn unsupported_version_frame(correlation_id: i32) -> BytesMut {
    let mut r = response();
    r.error_code = ResponseError::UnsupportedVersion.code();
    let mut body = BytesMut::new();
    // Encoding our own static table at v0 cannot fail; fall back to an empty key list if it ever did.
    if r.encode(&mut body, 0).is_err() {
        body.clear();
        body.put_i16(r.error_code);
        body.put_i32(0);
    }
    let mut out = BytesMut::with_capacity(body.len() + 8);
    // A few hundred bytes: the table of supported APIs.
    out.put_i32(i32::try_from(body.len() + 4).unwrap_or(i32::MAX));
    out.put_i32(correlation_id);
    out.extend_from_slice(&body);
    out
}
