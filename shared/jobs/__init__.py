"""Jobs over the whole fleet, built on the use cases: scheduled revalidation, key rotation and
re-encryption, bulk import."""
