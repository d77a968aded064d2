#!/usr/bin/env bash
# Builds ccm's image with buildah from a build tree: stages BUILD/image/ (the Containerfile
# and rootfs.tar from packaging/image-rootfs.sh), builds localhost/ccm:VERSION (also tagged
# latest), and saves it as an OCI archive, BUILD/image/ccm-image.oci.tar, for `podman load`
# on a machine that runs containers. Then the same for localhost/ccm-sims (the simulators
# and their OpenAPI documents, for packaging/compose.yaml) in BUILD/image-sims/. Prints ccm's
# tag.
#   packaging/build-image.sh BUILD [buildah global options...]
# No registry is reached: the image starts FROM scratch. No RUN step, so no container
# runtime is needed to build it; --isolation chroot keeps buildah from asking for one anyway.
# Global options choose the storage, e.g. `--root DIR --runroot DIR --storage-driver vfs`
# (scripts/check-package.sh builds into a throwaway store that way).
set -euo pipefail
build=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
binary=$build/stripped/ccm
if [ ! -x "$binary" ]; then
  echo "build-image: $binary is missing: build first (cmake --build $build)" >&2
  exit 1
fi
version=$("$binary" version | awk '{print $2}')
tag=localhost/ccm:$version

# image NAME STAGE CONTAINERFILE IMAGE-ROOTFS-ARGS...: stages STAGE, builds
# localhost/NAME:VERSION and :latest, saves STAGE/NAME-image.oci.tar.
image() {
  local name=$1 stage=$2 containerfile=$3
  shift 3
  local tag=localhost/$name:$version
  rm -rf "$stage"
  mkdir -p "$stage"
  cp "$containerfile" "$stage/Containerfile"
  bash "$here/image-rootfs.sh" "$stage/rootfs.tar" "$@"
  # A rebuild replaces the image of the same tag rather than leaving it behind untagged.
  buildah "${storage[@]}" rmi "$tag" "localhost/$name:latest" >/dev/null 2>&1 || true
  buildah "${storage[@]}" build --isolation chroot --pull=never --layers=false -f "$stage/Containerfile" \
    -t "$tag" -t "localhost/$name:latest" "$stage" >&2
  buildah "${storage[@]}" push --quiet "$tag" "oci-archive:$stage/$name-image.oci.tar:$tag" >&2
}
storage=("$@")
image ccm "$build/image" "$here/Containerfile" "$binary"
sims=()
for sim in cml-sim assessment-sim oidc-sim; do sims+=("$build/stripped/$sim"); done
image ccm-sims "$build/image-sims" "$here/Containerfile.sims" "${sims[@]}" -- /usr/share/ccm-sims \
  "$here/../tests/data/cml-2.9.openapi.json" "$here/../tests/data/grading-engine.openapi.json"
echo "$tag"
