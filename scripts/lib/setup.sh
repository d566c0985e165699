# Shared set-up for scripts/*: system packages through apt, the project in .venv.
# Sourced, not run.

# ensure_apt_packages COMMAND:PACKAGE ...: install PACKAGE with apt when COMMAND is missing;
# a COMMAND starting with / is a file the package provides (a package without a command).
ensure_apt_packages() {
  local missing=() pair have
  for pair in "$@"; do
    have=${pair%%:*}
    case $have in
      /*) [ -e "$have" ] || missing+=("${pair#*:}") ;;
      *) command -v "$have" >/dev/null 2>&1 || missing+=("${pair#*:}") ;;
    esac
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${missing[*]}; install them with apt-get as root" >&2
    return 1
  fi
  echo "== apt-get install ${missing[*]}"
  apt-get update -qq
  # Services must not start at install time (CI and containers have no init to run them).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
}

# ensure_venv: create .venv if missing and install the project with its dev extra
# (again only when pyproject.toml changed since the last install).
ensure_venv() {
  local python=${PYTHON:-python3}
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    "$python" -m venv .venv
  fi
  local stamp=.venv/.dialerd-installed
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "== pip install -e .[dev]"
    .venv/bin/python -m pip install -q --upgrade pip >/dev/null
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
  fi
}
