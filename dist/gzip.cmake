# superd_gzip(FILE): a rule that makes FILE.gz from FILE, as Debian wants
# man pages and changelogs; gzip -n leaves out the name and time, so that
# builds are reproducible.
find_program(GZIP gzip REQUIRED)
function(superd_gzip file)
  add_custom_command(
    OUTPUT ${file}.gz
    COMMAND sh -c "\"$1\" -9 -n -c \"$2\" > \"$2.gz\"" gzip ${GZIP} ${file}
    DEPENDS ${file}
    VERBATIM)
endfunction()
