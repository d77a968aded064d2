#!/usr/bin/env bash
# Builds ccm's image with buildah from a build tree: stages BUILD/image/ (the Containerfile
# and rootfs.tar from packaging/image-rootfs.sh), builds localhost/ccm:VERSION, and saves it
# as an OCI archive, BUILD/image/ccm-image.oci.tar, for `podman load` on a machine that runs
# containers.
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

stage=$build/image
rm -rf "$stage"
mkdir -p "$stage"
cp "$here/Containerfile" "$stage/Containerfile"
bash "$here/image-rootfs.sh" "$binary" "$stage/rootfs.tar"

# A rebuild replaces the image of the same tag rather than leaving it behind untagged.
buildah "$@" rmi "$tag" >/dev/null 2>&1 || true
buildah "$@" build --isolation chroot --pull=never --layers=false -f "$stage/Containerfile" -t "$tag" "$stage" >&2
rm -f "$stage/ccm-image.oci.tar"
buildah "$@" push --quiet "$tag" "oci-archive:$stage/ccm-image.oci.tar:$tag" >&2
echo "$tag"
