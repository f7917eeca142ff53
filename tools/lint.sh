#!/usr/bin/env bash
# Static checks of the project's own C: formatting (.clang-format) and
# cppcheck. Exits non-zero on a finding.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(git ls-files '*.c' '*.h')

echo "== clang-format"
for f in $files; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || { echo "not formatted: $f"; status=1; }
done

echo "== cppcheck"
# GLib's attribute and definition macros mean nothing to the analysis.
cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
  --enable=warning,performance,portability --library=gtk \
  -D__GNUC__ -D__x86_64__ -DG_GNUC_PRINTF\(a,b\)= -DG_DEFINE_QUARK\(a,b\)= \
  -DG_GNUC_UNUSED= -DG_BEGIN_DECLS= -DG_END_DECLS= \
  --suppress=missingIncludeSystem --suppress=unknownMacro \
  -I core core gst-plugin tools examples || status=1
exit $status
