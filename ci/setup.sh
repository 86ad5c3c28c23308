#!/usr/bin/env bash
# Installs what ferrogem needs on a fresh Debian 12 machine, and nothing when it is already there:
# a Vulkan loader and Mesa's lavapipe (a software Vulkan adapter, for machines without a GPU), headless
# Chromium (the dashboard render test), and the wasm32 target the engine's browser build is checked against.
# Safe to run repeatedly.
set -euo pipefail

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# No `grep -q` and no `ls` of globs in these tests: under pipefail, grep -q's early exit (SIGPIPE to the writer)
# or ls's error for a missing folder would make a present driver look absent.
have_vulkan_driver() {
    ldconfig -p 2>/dev/null | grep 'libvulkan.so.1' >/dev/null || return 1
    local icd
    for icd in /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d; do
        compgen -G "$icd/*.json" >/dev/null && return 0
    done
    return 1
}

packages=()
have_vulkan_driver || packages+=(mesa-vulkan-drivers libvulkan1)
# Headless Chromium opens the `ferrogem report` dashboard in harness/tests/report_render.rs.
command -v chromium >/dev/null || packages+=(chromium)
if [ ${#packages[@]} -gt 0 ]; then
    echo "ci/setup.sh: installing ${packages[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -x wasm32-unknown-unknown >/dev/null; then
    echo "ci/setup.sh: adding the wasm32-unknown-unknown target" >&2
    rustup target add wasm32-unknown-unknown >&2
fi
