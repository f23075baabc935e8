# Install-time part of superd's install: the files that name paths (the
# config and the systemd unit) are generated here, from the prefix this
# install actually goes to, so that one build tree installs right into any
# prefix (`cmake --install build --prefix /tmp/x`, or cpack's /usr).
# dist/CMakeLists.txt sets SUPERD_DIST_DIR, SUPERD_STAGING_DIR and the
# SUPERD_*DIR values (CMAKE_INSTALL_*DIR as configured) before this runs.

include("${SUPERD_DIST_DIR}/dirs.cmake")
superd_full_dir(SUPERD_SBINDIR "${CMAKE_INSTALL_PREFIX}" "${SUPERD_SBINDIR}")
superd_full_dir(SUPERD_BINDIR "${CMAKE_INSTALL_PREFIX}" "${SUPERD_BINDIR}")
superd_full_dir(SUPERD_LIBEXECDIR "${CMAKE_INSTALL_PREFIX}" "${SUPERD_LIBEXECDIR}")
superd_full_sysconfdir(SUPERD_SYSCONFDIR "${CMAKE_INSTALL_PREFIX}" "${SUPERD_SYSCONFDIR}")
# Debian's place for units ($prefix/lib, not the multiarch libdir); systemd
# also looks in /usr/local/lib/systemd/system.
superd_full_dir(unitdir "${CMAKE_INSTALL_PREFIX}" "lib/systemd/system")

# Generated apart for each destination, so that two installs from one build
# tree at once (the tests do) do not write the same files.
string(SHA1 key "$ENV{DESTDIR}${CMAKE_INSTALL_PREFIX}")
set(staging "${SUPERD_STAGING_DIR}/${key}")
configure_file("${SUPERD_DIST_DIR}/superd.toml.in" "${staging}/superd.toml" @ONLY)
configure_file("${SUPERD_DIST_DIR}/superd.service.in" "${staging}/superd.service" @ONLY)
file(MAKE_DIRECTORY "${staging}/superd.d")

# An edited configuration is never overwritten by a later install (a package
# has dpkg's conffile handling for that).
set(config "$ENV{DESTDIR}${SUPERD_SYSCONFDIR}/superd/superd.toml")
if(EXISTS "${config}")
  message(STATUS "Keeping: ${config} (an installed configuration is not overwritten)")
else()
  file(INSTALL "${staging}/superd.toml" DESTINATION "${SUPERD_SYSCONFDIR}/superd")
endif()
file(INSTALL "${staging}/superd.d" DESTINATION "${SUPERD_SYSCONFDIR}/superd")
file(INSTALL "${staging}/superd.service" DESTINATION "${unitdir}")
