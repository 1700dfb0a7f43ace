#!/usr/bin/env bash
# Downloads into .gl/ the Debian packages a bare NVIDIA machine lacks for the GPU engine: the
# Vulkan loader and the GL/X client libraries the NVIDIA Vulkan driver loads through
# libGLX_nvidia, even headless (about 1.5 MB). benches/device.sh unpacks them there when the
# system has no libvulkan.so.1. Run from the repository root on a Debian/Ubuntu machine that
# reaches the package archive; .gl/ is kept out of git. amd64 packages whatever this machine is.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 libxext6 libx11-6
  libxcb1 libxau6 libxdmcp6 libbsd0 libmd0)
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
mkdir -p .gl "$lists/partial"
# Package lists of their own, for amd64, so the machine's own apt state is left alone.
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists" -oAPT::Sandbox::User=root)
apt-get "${o[@]}" -qq update
rm -f .gl/*.deb
(cd .gl && apt-get "${o[@]}" -qq download "${PACKAGES[@]}")
n=$(find .gl -maxdepth 1 -name '*.deb' | wc -l)
if [ "$n" -ne "${#PACKAGES[@]}" ]; then
  echo "fetch-gl-debs.sh: got $n of ${#PACKAGES[@]} packages in .gl/" >&2
  exit 1
fi
du -ch .gl/*.deb | tail -1
ls .gl
