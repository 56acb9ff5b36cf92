//! Media types and annotation keys, and which media types name an index
//! or an image manifest (OCI and Docker spellings alike).

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";
pub const ANNOTATION_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const ANNOTATION_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";

/// True for media types that name an index (OCI index or Docker manifest list).
pub fn is_index_media_type(mt: &str) -> bool {
    mt == MEDIA_TYPE_INDEX || mt == MEDIA_TYPE_DOCKER_LIST
}

/// True for media types that name a single-platform image manifest.
pub fn is_manifest_media_type(mt: &str) -> bool {
    mt == MEDIA_TYPE_MANIFEST || mt == MEDIA_TYPE_DOCKER_MANIFEST
}

/// True for the media types a layer may have: an OCI tar (plain, gzip or
/// zstd), Docker's gzip layer, or a foreign / non-distributable one.
pub fn is_layer_media_type(mt: &str) -> bool {
    [
        MEDIA_TYPE_LAYER_TAR,
        MEDIA_TYPE_LAYER_GZIP,
        MEDIA_TYPE_LAYER_ZSTD,
        MEDIA_TYPE_DOCKER_LAYER_GZIP,
    ]
    .contains(&mt)
        || is_non_distributable(mt)
}

/// True for foreign / non-distributable layers (Windows base layers): they
/// live outside registries, which fetch them from their URLs, so they are
/// never uploaded, copied nor downloaded.
pub fn is_non_distributable(mt: &str) -> bool {
    mt.contains("foreign") || mt.contains("nondistributable")
}
