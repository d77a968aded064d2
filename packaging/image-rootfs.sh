#!/usr/bin/env bash
# Makes the root filesystem of an image as a tar archive (numeric owners), from built
# binaries: each binary at /usr/bin/NAME, every shared library `ldd` names for them (the
# dynamic loader included) at the path ldd gives, the CA certificates, /etc/passwd and
# /etc/group naming the user ccm (65532), /var/lib/ccm owned by it, and /tmp. Files after
# `--` go to the directory named first there (the simulators' OpenAPI documents).
#   packaging/image-rootfs.sh OUT.tar BINARY... [-- DIR FILE...]
set -euo pipefail
out=$1
shift
binaries=()
while (($#)) && [ "$1" != -- ]; do
  binaries+=("$1")
  shift
done
data_dir=""
data_files=()
if (($#)); then
  shift
  data_dir=$1
  shift
  data_files=("$@")
fi
uid=65532

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"

for binary in "${binaries[@]}"; do
  install -D -m 0755 "$binary" "$root/usr/bin/$(basename "$binary")"
done
for file in "${data_files[@]}"; do
  install -D -m 0644 "$file" "$root$data_dir/$(basename "$file")"
done

# ldd prints "name => /path (addr)" for each library and "/path (addr)" for the loader.
for binary in "${binaries[@]}"; do ldd "$binary"; done | awk '/=> \// {print $3} /^\t\// {print $1}' | sort -u | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  # The file itself under the name ldd gives: the soname, in a directory the loader searches
  # when there is no ld.so.cache (/lib/x86_64-linux-gnu), or the loader's own PT_INTERP path.
  cp -L "$lib" "$root$lib"
done

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "image-rootfs: $ca is missing (apt-get install ca-certificates)" >&2
  exit 1
fi
install -D -m 0644 "$ca" "$root$ca"

install -d -m 0755 "$root/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nccm:x:%s:%s:ccm:/var/lib/ccm:/sbin/nologin\n' $uid $uid >"$root/etc/passwd"
printf 'root:x:0:\nccm:x:%s:\n' $uid >"$root/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
chmod 0644 "$root/etc/passwd" "$root/etc/group" "$root/etc/nsswitch.conf"

install -d -m 0750 -o $uid -g $uid "$root/var/lib/ccm"
install -d -m 1777 "$root/tmp"

tar --numeric-owner --sort=name -C "$root" -cf "$out" .
