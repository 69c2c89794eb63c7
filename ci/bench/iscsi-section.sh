#!/usr/bin/env bash
# iscsi-section.sh FILE NAME CONTENT_FILE: replaces the lines between
# "<!-- BEGIN NAME -->" and "<!-- END NAME -->" in FILE with CONTENT_FILE
# (appending the markers at the end if FILE lacks them).
set -euo pipefail
file=$1 name=$2 content=$3
touch "$file"
if ! grep -q "<!-- BEGIN $name -->" "$file"; then
  printf '\n<!-- BEGIN %s -->\n<!-- END %s -->\n' "$name" "$name" >>"$file"
fi
awk -v name="$name" -v content="$content" '
  $0 == "<!-- BEGIN " name " -->" { print; while ((getline line < content) > 0) print line; skip = 1; next }
  $0 == "<!-- END " name " -->" { skip = 0 }
  !skip { print }
' "$file" >"$file.tmp"
mv "$file.tmp" "$file"
