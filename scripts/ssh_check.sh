#!/usr/bin/env bash
# vgtui as a person on a remote box runs it: through a real SSH session to this machine, inside tmux, keys pressed
# and the screen read back. Starts its own sshd (Debian's openssh-server) on a free loopback port with throwaway
# host and user keys, all in a temporary folder that is removed at the end, and stops it again.
#
#   scripts/ssh_check.sh                 # needs: apt-get install -y openssh-server tmux
#   PYTHON=/path/to/venv/bin/python scripts/ssh_check.sh
#
# PYTHON is the interpreter with vgtui's dependencies (default: .venv/bin/python of this checkout, else python3);
# the checkout itself is what runs (PYTHONPATH). Prints one line per check and exits 0 when all pass, 1 otherwise
# (with the screen as it was), 2 when something it needs is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-$([ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || command -v python3)}
WIDTH=${WIDTH:-120}
HEIGHT=${HEIGHT:-40}
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
for tool in "$SSHD" ssh ssh-keygen tmux; do
    if ! command -v "$tool" >/dev/null; then
        echo "ssh_check: needs $tool (apt-get install -y openssh-server tmux)" >&2
        exit 2
    fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vgtui-ssh.XXXXXX")
SOCK="vgtui-ssh-$$"
cleanup() {
    tmux -L "$SOCK" kill-server 2>/dev/null || true
    if [ -s "$WORK/sshd.pid" ]; then kill "$(cat "$WORK/sshd.pid")" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------- a private sshd on a free loopback port
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
USER_NAME=$(id -un)
ssh-keygen -q -t ed25519 -N '' -f "$WORK/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$WORK/user_key"
cp "$WORK/user_key.pub" "$WORK/authorized_keys"
chmod 600 "$WORK/authorized_keys"
cat > "$WORK/sshd_config" <<EOF
Port $PORT
ListenAddress 127.0.0.1
HostKey $WORK/host_key
PidFile $WORK/sshd.pid
AuthorizedKeysFile $WORK/authorized_keys
AllowUsers $USER_NAME
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
AcceptEnv LANG LC_*
EOF
[ "$(id -u)" = 0 ] && mkdir -p /run/sshd  # sshd's privilege-separation folder, when run as root
"$SSHD" -f "$WORK/sshd_config" -E "$WORK/sshd.log"
for _ in $(seq 50); do [ -s "$WORK/sshd.pid" ] && break; sleep 0.1; done

OPTS=(-p "$PORT" -i "$WORK/user_key" -o BatchMode=yes -o StrictHostKeyChecking=no
      -o UserKnownHostsFile="$WORK/known_hosts" -o LogLevel=ERROR)
if ! ssh "${OPTS[@]}" "$USER_NAME@127.0.0.1" true 2>"$WORK/ssh.err"; then
    echo "FAIL ssh to 127.0.0.1:$PORT: $(cat "$WORK/ssh.err")"; cat "$WORK/sshd.log"; exit 1
fi
echo "ok   sshd on 127.0.0.1:$PORT, key login as $USER_NAME"

# ---------------------------------------------------------------- vgtui through it, inside tmux
METRICS="$WORK/metrics.jsonl"
REMOTE="cd $(printf %q "$ROOT") && PYTHONPATH=$(printf %q "$ROOT") exec $(printf %q "$PYTHON") -m vgtui \
--dataset mnist-5k --epochs 1000 --metrics $(printf %q "$METRICS")"
tmux -L "$SOCK" new-session -d -s ssh -x "$WIDTH" -y "$HEIGHT" \
    "ssh -tt $(printf '%q ' "${OPTS[@]}") $USER_NAME@127.0.0.1 $(printf %q "$REMOTE"); echo EXIT=\$? > $WORK/rc; sleep 600"
TERM_IN=$(tmux -L "$SOCK" show-options -gv default-terminal)

screen() { tmux -L "$SOCK" capture-pane -p -t ssh; }
keys() { tmux -L "$SOCK" send-keys -t ssh "$@"; }
FAILED=0
expect() {  # expect TEXT SECONDS WHAT: wait until the screen shows TEXT
    local text=$1 secs=$2 what=$3 t0
    t0=$(date +%s%N)
    for _ in $(seq $((secs * 20))); do
        if screen | grep -qF -- "$text"; then
            echo "ok   $what ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
            return 0
        fi
        sleep 0.05
    done
    echo "FAIL $what: \"$text\" not on the screen after $secs s:"; screen; FAILED=1; return 1
}
expect_gone() {
    local text=$1 secs=$2 what=$3
    for _ in $(seq $((secs * 20))); do
        if ! screen | grep -qF -- "$text"; then echo "ok   $what"; return 0; fi
        sleep 0.05
    done
    echo "FAIL $what: \"$text\" still on the screen after $secs s:"; screen; FAILED=1; return 1
}

expect "steps/s" 90 "the UI trains over ssh at ${WIDTH}x${HEIGHT}, TERM=$TERM_IN"
expect "fc1" 5 "the layers are on the screen"
keys Space
expect "⏸ paused" 5 "space pauses"
keys '?'
expect "or esc closes" 5 "? opens the help"
keys Escape
expect_gone "or esc closes" 5 "escape closes the help"
keys Space
expect "▶ running" 5 "space resumes"
keys a
for _ in $(seq 100); do grep -q '"activation":"tanh"' "$METRICS" 2>/dev/null && break; sleep 0.05; done
if grep -q '"activation":"tanh"' "$METRICS"; then echo "ok   a switches the activation to tanh (an event record)"
else echo "FAIL a: no activation change in the metrics file"; FAILED=1; fi
expect "tanh" 5 "the screen shows tanh"
keys q
for _ in $(seq 100); do [ -s "$WORK/rc" ] && break; sleep 0.05; done
RC=$(cut -d= -f2 "$WORK/rc" 2>/dev/null || echo none)
if [ "$RC" = 0 ]; then echo "ok   q quits, exit status 0 through ssh"
else echo "FAIL q: exit status $RC"; screen; FAILED=1; fi
LAST=$(tail -n 1 "$METRICS")
if echo "$LAST" | grep -q '"type":"end"'; then echo "ok   the metrics file ends with an end record: $LAST"
else echo "FAIL the metrics file does not end with an end record: $LAST"; FAILED=1; fi
if [ "$FAILED" = 0 ]; then echo "PASS: vgtui over ssh in tmux"; else echo "FAILED"; fi
exit "$FAILED"
