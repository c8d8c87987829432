//! Which product the emulator says it is: Elasticsearch 8.x sends `X-elastic-product` on every
//! answer but 401 and answers `GET /` as 8.15.0; with `es_opensearch` it answers as OpenSearch
//! 2.17.1 and never sends the product header (`docs/PROTOCOLS.md` §2.9, §2.4 for 413).

use serde_json::json;

use crate::Reply;

pub(crate) fn with_product_header(r: Reply) -> Reply {
    r.header("x-elastic-product", "Elasticsearch")
}

pub(crate) fn too_large() -> Reply {
    with_product_header(Reply::empty(413))
}

pub(super) fn info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "sendauth-emulator-node-0",
            "cluster_name": "sendauth-emulator",
            "cluster_uuid": "ZW11bGF0b3ItY2x1c3Rlcg",
            "version": {
                "number": "8.15.0",
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
    )
}

/// `GET /` of an OpenSearch 2.x node: `version.distribution` says which product it is.
pub(super) fn opensearch_info() -> Reply {
    Reply::json(
        200,
        &json!({
            "name": "sendauth-emulator-os-node-0",
            "cluster_name": "sendauth-emulator-opensearch",
            "cluster_uuid": "b3BlbnNlYXJjaC1lbXU",
            "version": {
                "distribution": "opensearch",
                "number": "2.17.1",
                "build_type": "tar",
                "build_hash": "1893d20797e30110e5877170e44d42275ce5951e",
                "build_date": "2024-09-26T21:59:52.691008096Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.10.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "The OpenSearch Project: https://opensearch.org/"
        }),
    )
}
