#!/usr/bin/env bash
# Installs what ferrogem needs on a fresh Debian 12 machine, and nothing when it is already there. Say what:
#
#   bash ci/setup.sh vulkan                       # a Vulkan loader and Mesa's lavapipe (a software Vulkan adapter),
#                                                 # only when no Vulkan driver is present: what `ferrogem` needs
#   bash ci/setup.sh vulkan chromium wasm32 browser lint  # everything ci/test.sh needs
#   bash ci/setup.sh                              # the same as naming all five
#
#   vulkan    the Vulkan loader (libvulkan1) and lavapipe (mesa-vulkan-drivers), when no Vulkan driver is installed
#   chromium  headless Chromium, which opens the `ferrogem report` dashboard in harness/tests/report_render.rs
#   wasm32    the wasm32-unknown-unknown rustup target the engine's browser build is checked against
#   browser   what web/'s tests need to run in Chromium: chromium, chromedriver, the wasm32 target and the
#             wasm-bindgen CLI (its test runner) at exactly Cargo.lock's wasm-bindgen version (cargo install, ~6 min)
#   lint      the rustfmt and clippy rustup components (`cargo fmt`, `cargo clippy`)
#
# Safe to run repeatedly: silent when everything is present; otherwise one line on stderr says what it installs.
set -euo pipefail

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2; }
die() { echo "ci/setup.sh: $*" >&2; exit 1; }

want_vulkan=0 want_chromium=0 want_wasm32=0 want_browser=0 want_lint=0
[ $# -gt 0 ] || set -- vulkan chromium wasm32 browser lint
for what in "$@"; do
    case $what in
        vulkan) want_vulkan=1 ;;
        chromium) want_chromium=1 ;;
        wasm32) want_wasm32=1 ;;
        browser) want_browser=1 want_chromium=1 want_wasm32=1 ;;
        lint) want_lint=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "ci/setup.sh: unknown item '$what'" >&2; usage; exit 2 ;;
    esac
done

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Runs a command with its output held back; prints the output only when the command fails.
quietly() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "failed: $*"
    fi
}

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

# Same rule: the output is captured first and then searched, so no pipe can fail on an early exit.
have_wasm32_target() {
    local installed
    installed=$(rustup target list --installed 2>/dev/null) || return 1
    grep -x wasm32-unknown-unknown <<<"$installed" >/dev/null
}

packages=()
[ $want_vulkan = 0 ] || have_vulkan_driver || packages+=(mesa-vulkan-drivers libvulkan1)
[ $want_chromium = 0 ] || command -v chromium >/dev/null || packages+=(chromium)
[ $want_browser = 0 ] || command -v chromedriver >/dev/null || packages+=(chromium-driver)
targets=()
[ $want_wasm32 = 0 ] || have_wasm32_target || targets+=(wasm32-unknown-unknown)
# A working `cargo fmt` / `cargo clippy` is the test: rustup's proxies fail when the component is missing.
components=()
[ $want_lint = 0 ] || cargo fmt --version >/dev/null 2>&1 || components+=(rustfmt)
[ $want_lint = 0 ] || cargo clippy --version >/dev/null 2>&1 || components+=(clippy)

# The wasm-bindgen CLI must be the very version of the wasm-bindgen crate in Cargo.lock, or it refuses the module.
wasm_bindgen_version=
if [ $want_browser = 1 ]; then
    lock=$(dirname "$0")/../Cargo.lock
    wasm_bindgen_version=$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' "$lock")
    [ -n "$wasm_bindgen_version" ] || die "no wasm-bindgen version in $lock"
    installed=$(wasm-bindgen --version 2>/dev/null || true)
    [ "$installed" != "wasm-bindgen $wasm_bindgen_version" ] || wasm_bindgen_version=
fi

plan=()
[ ${#packages[@]} = 0 ] || plan+=("${packages[*]}")
[ -z "$wasm_bindgen_version" ] || plan+=("wasm-bindgen-cli $wasm_bindgen_version (cargo install, several minutes)")
[ ${#targets[@]} = 0 ] || plan+=("the rustup target ${targets[*]}")
[ ${#components[@]} = 0 ] || plan+=("the rustup components ${components[*]}")
[ ${#plan[@]} -gt 0 ] || exit 0
summary=$(printf '%s, ' "${plan[@]}")
echo "ci/setup.sh: installing ${summary%, }" >&2

if [ ${#packages[@]} -gt 0 ]; then
    quietly as_root apt-get update -qq
    quietly as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
if [ ${#targets[@]} -gt 0 ] || [ ${#components[@]} -gt 0 ]; then
    rust_items=("${targets[@]}" "${components[@]}")
    command -v rustup >/dev/null || die "rustup is needed to add ${rust_items[*]} (https://rustup.rs)"
fi
[ ${#targets[@]} = 0 ] || quietly rustup target add "${targets[@]}"
[ ${#components[@]} = 0 ] || quietly rustup component add "${components[@]}"
# Not --locked: the registry mirror lacks one of the CLI's locked dependencies; the CLI's own version is exact.
[ -z "$wasm_bindgen_version" ] || quietly cargo install -q wasm-bindgen-cli --version "$wasm_bindgen_version"
