# Where an install puts superd's files, as absolute paths, from the prefix of
# that install. Included at configure time (for the package's conffiles) and
# by install_generated.cmake at install time, when the prefix is the one
# `cmake --install --prefix` or cpack actually installs to.
#
# The rules are GNUInstallDirs' own: a relative dir is under the prefix, an
# absolute one stays, and the configuration of a system install goes to /etc,
# not /usr/etc (prefix / or /usr; /etc/opt/NAME for /opt/NAME).

# Sets `out` to where `dir` (a CMAKE_INSTALL_*DIR value) lands under `prefix`.
function(superd_full_dir out prefix dir)
  if(IS_ABSOLUTE "${dir}")
    set(${out} "${dir}" PARENT_SCOPE)
  elseif(prefix STREQUAL "/")
    set(${out} "/${dir}" PARENT_SCOPE)
  else()
    set(${out} "${prefix}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

# The same for the sysconfdir, with GNUInstallDirs' exceptions.
function(superd_full_sysconfdir out prefix dir)
  if(NOT IS_ABSOLUTE "${dir}" AND dir STREQUAL "etc")
    if(prefix STREQUAL "/" OR prefix STREQUAL "/usr")
      set(${out} "/etc" PARENT_SCOPE)
      return()
    elseif(prefix MATCHES "^/opt/(.*)")
      set(${out} "/etc/opt/${CMAKE_MATCH_1}" PARENT_SCOPE)
      return()
    endif()
  endif()
  superd_full_dir(full "${prefix}" "${dir}")
  set(${out} "${full}" PARENT_SCOPE)
endfunction()
