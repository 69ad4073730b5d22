#!/usr/bin/env bash
# Set up and run a real ComfyUI next to this checkout (never inside it) to test the pack by hand and
# with tests/test_real_comfyui.py. See docs/comfyui_host.md for the whole procedure.
#
#   scripts/comfyui_host.sh checkout GIT_DIR   # write ComfyUI's files from a bare git dir to $COMFY_DIR
#   scripts/comfyui_host.sh venv               # $COMFY_DIR/.venv: torch, ComfyUI + pack requirements
#   scripts/comfyui_host.sh ci-venv            # the venv the tests start ComfyUI with ($COMFY_VENV, default
#                                              # ~/.cache/comfyui-sora/comfyui-venv) for the tree in $COMFY_SRC
#                                              # (default ../shared/comfyui)
#   scripts/comfyui_host.sh link               # symlink this checkout into custom_nodes/comfyui-sora
#   scripts/comfyui_host.sh start | stop | restart | status
#   scripts/comfyui_host.sh check              # list import failures of the pack in the server log
#   scripts/comfyui_host.sh all GIT_DIR        # checkout, venv, link, start
#
# Environment: COMFY_DIR (default /work/comfyui), COMFY_PORT (8188), COMFY_TORCH (torch==2.14.1),
# COMFY_TORCHVISION (torchvision==0.29.1). The server listens on 127.0.0.1 only and logs to
# $COMFY_DIR/server.log; its pid is in $COMFY_DIR/server.pid (server-PORT.* for another port, so
# several servers can run side by side for `sora batch`). Afterwards:
#   SORA_COMFYUI_URL=http://127.0.0.1:8188 python -m pytest -q tests/test_real_comfyui.py
set -euo pipefail

PACK_DIR="$(cd "$(dirname "$0")/.." && pwd)"
COMFY_DIR="${COMFY_DIR:-/work/comfyui}"
COMFY_PORT="${COMFY_PORT:-8188}"
COMFY_TORCH="${COMFY_TORCH:-torch==2.14.1}"
COMFY_TORCHVISION="${COMFY_TORCHVISION:-torchvision==0.29.1}"
PY="$COMFY_DIR/.venv/bin/python"
SUFFIX="$([[ "$COMFY_PORT" == 8188 ]] || echo "-$COMFY_PORT")"   # a second server: COMFY_PORT=8189
LOG="$COMFY_DIR/server$SUFFIX.log"
PIDFILE="$COMFY_DIR/server$SUFFIX.pid"
URL="http://127.0.0.1:$COMFY_PORT"

die() { echo "comfyui_host: $*" >&2; exit 2; }

# ---------------------------------------------------------------- checkout
checkout() {
    # Writes every blob of HEAD of a bare git dir (no work tree) into $COMFY_DIR; blobs missing from the
    # snapshot (large files kept out of it) are skipped and listed.
    local git_dir="${1:-}"
    [[ -n "$git_dir" && -d "$git_dir" ]] || die "checkout needs the ComfyUI git dir (got '${git_dir}')"
    case "$COMFY_DIR" in "$PACK_DIR"|"$PACK_DIR"/*) die "COMFY_DIR must be outside the pack checkout";; esac
    mkdir -p "$COMFY_DIR"
    local missing=0
    while IFS=$'\t' read -r meta path; do
        read -r mode type sha <<<"$meta"
        [[ "$type" == blob ]] || continue
        mkdir -p "$COMFY_DIR/$(dirname "$path")"
        if ! git --git-dir="$git_dir" cat-file blob "$sha" >"$COMFY_DIR/$path.tmp" 2>/dev/null; then
            rm -f "$COMFY_DIR/$path.tmp"; echo "skipped (blob not in snapshot): $path"; missing=$((missing + 1))
            continue
        fi
        mv "$COMFY_DIR/$path.tmp" "$COMFY_DIR/$path"
        [[ "$mode" == 100755 ]] && chmod +x "$COMFY_DIR/$path"
    done < <(git --git-dir="$git_dir" ls-tree -r HEAD)
    echo "ComfyUI $(grep -o '"[0-9.]*"' "$COMFY_DIR/comfyui_version.py" | tr -d '"') written to $COMFY_DIR" \
         "($missing blobs skipped)"
}

# ---------------------------------------------------------------- venv
make_venv() {
    # make_venv VENV_DIR COMFY_REQUIREMENTS: torch + torchvision, ComfyUI's requirements without its torch
    # lines (torchaudio is not needed for the pack and has no build for this torch here: left out),
    # requests, and the pack's own requirements, the way ComfyUI-Manager installs a pack.
    local venv_dir="$1" req="$2" py="$1/bin/python"
    [[ -f "$req" ]] || die "no ComfyUI requirements file at $req"
    [[ -x "$py" ]] || { mkdir -p "$(dirname "$venv_dir")"; python3 -m venv "$venv_dir"; }
    "$py" -m pip install -q "$COMFY_TORCH" "$COMFY_TORCHVISION"
    local notorch; notorch="$(mktemp)"
    grep -v -E '^(torch|torchvision|torchaudio)$' "$req" >"$notorch"
    "$py" -m pip install -q -r "$notorch" requests
    rm -f "$notorch"
    "$py" -m pip install -q -r "$PACK_DIR/requirements.txt"
    "$py" -c "import torch, torchvision, comfy_kitchen; print('venv ready:', '$venv_dir', 'torch', torch.__version__)"
}

venv() {
    [[ -f "$COMFY_DIR/main.py" ]] || die "no ComfyUI in $COMFY_DIR: run 'checkout' first"
    make_venv "$COMFY_DIR/.venv" "$COMFY_DIR/requirements.txt"
}

ci_venv() {
    # The venv the test suite starts ComfyUI with (tests/comfyui_server.py): the source tree stays
    # read-only, the venv lives outside it.
    local src="${COMFY_SRC:-$PACK_DIR/../shared/comfyui}"
    local venv_dir="${COMFY_VENV:-$HOME/.cache/comfyui-sora/comfyui-venv}"
    [[ -f "$src/main.py" ]] || die "no ComfyUI source tree at $src (set COMFY_SRC)"
    make_venv "$venv_dir" "$src/requirements.txt"
}

# ---------------------------------------------------------------- link
link() {
    mkdir -p "$COMFY_DIR/custom_nodes"
    ln -sfn "$PACK_DIR" "$COMFY_DIR/custom_nodes/comfyui-sora"
    echo "linked $COMFY_DIR/custom_nodes/comfyui-sora -> $PACK_DIR"
}

# ---------------------------------------------------------------- server
running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

start() {
    running && { echo "already running (pid $(cat "$PIDFILE")) at $URL"; return; }
    [[ -x "$PY" ]] || die "no venv: run 'venv' first"
    if curl -s -o /dev/null "$URL/" 2>/dev/null; then
        die "another server already answers at $URL: choose another COMFY_PORT"
    fi
    pushd "$COMFY_DIR" >/dev/null
    nohup "$PY" main.py --cpu --listen 127.0.0.1 --port "$COMFY_PORT" >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    popd >/dev/null
    for _ in $(seq 1 180); do
        running || { tail -n 40 "$LOG"; die "server exited during start-up (log: $LOG)"; }
        if curl -sf "$URL/system_stats" >/dev/null 2>&1; then echo "ComfyUI up at $URL (pid $(cat "$PIDFILE"))"; check; return; fi
        sleep 1
    done
    die "server not answering at $URL after 180 s (log: $LOG)"
}

stop() {
    if running; then
        local pid; pid="$(cat "$PIDFILE")"; kill "$pid"
        for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
        echo "stopped pid $pid"
    fi
    rm -f "$PIDFILE"
}

status() {
    if running; then echo "running (pid $(cat "$PIDFILE")) at $URL"; else echo "not running"; fi
}

check() {
    # ComfyUI prints "Cannot import ... module for custom nodes" and a traceback when a pack fails.
    [[ -f "$LOG" ]] || die "no server log at $LOG"
    if grep -n -A 30 -E "Cannot import .*comfyui-sora|IMPORT FAILED.*comfyui-sora" "$LOG"; then
        echo "comfyui_host: the pack FAILED to import (see above)"; return 1
    fi
    grep -n -E "comfyui-sora" "$LOG" || echo "comfyui_host: no line about comfyui-sora in the log yet"
}

cmd="${1:-}"; shift || true
case "$cmd" in
    checkout) checkout "$@";;
    venv) venv;;
    ci-venv) ci_venv;;
    link) link;;
    start) start;;
    stop) stop;;
    restart) stop; start;;
    status) status;;
    check) check;;
    all) checkout "$@"; venv; link; start;;
    *) sed -n '2,19p' "$0"; exit 2;;
esac
