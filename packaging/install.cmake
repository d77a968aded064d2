# Install rules and the Debian packages (CPack DEB): `cmake --install build`, or `make package`.
#
# Packages (components):
#   ccm          the stripped `ccm`, its systemd unit, /etc/ccm/ccm.yaml (a conffile), the
#                docs and the bash completion; postinst adds the system user `ccm`
#   ccm-sims     the stripped simulators (cml-sim, assessment-sim, oidc-sim): tests and demos
#   ccm-dbgsym   ccm's debug information, split out of the binary (/usr/lib/debug/...), which
#                gdb finds through the binary's build id or its .gnu_debuglink
#
# The binaries installed are copies stripped at build time (target ccm_stripped): the build
# tree's own binaries keep their debug information for the tests and gdb.
include(GNUInstallDirs)
# `make package` builds ccm_stripped alone (ccm and the simulators), not the tests and
# benchmarks: installing must not pull in the whole `all`.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

find_program(CCM_OBJCOPY NAMES objcopy REQUIRED)

# Makes stripped/<name> (no debug information, a .gnu_debuglink to <name>.debug) and
# stripped/<name>.debug (the debug information alone) from `target` after each link.
set(CCM_STRIPPED_DIR ${CMAKE_BINARY_DIR}/stripped)
function(ccm_split_debug target)
  set(out ${CCM_STRIPPED_DIR}/${target})
  add_custom_command(
    OUTPUT ${out} ${out}.debug
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CCM_STRIPPED_DIR}
    COMMAND ${CCM_OBJCOPY} --only-keep-debug $<TARGET_FILE:${target}> ${out}.debug
    # The link names the debug file by its base name and CRC; run from its directory.
    COMMAND ${CCM_OBJCOPY} --strip-debug --strip-unneeded --add-gnu-debuglink=${target}.debug
            $<TARGET_FILE:${target}> ${target}
    WORKING_DIRECTORY ${CCM_STRIPPED_DIR}
    DEPENDS ${target}
    COMMENT "Splitting the debug information out of ${target}"
    VERBATIM)
  set(CCM_STRIPPED_OUTPUTS ${CCM_STRIPPED_OUTPUTS} ${out} ${out}.debug PARENT_SCOPE)
endfunction()

set(CCM_STRIPPED_OUTPUTS)
foreach(t ccm cml-sim assessment-sim oidc-sim)
  ccm_split_debug(${t})
endforeach()
add_custom_target(ccm_stripped ALL DEPENDS ${CCM_STRIPPED_OUTPUTS})

install(PROGRAMS ${CCM_STRIPPED_DIR}/ccm DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT ccm)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/ccm.bash-completion DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
        RENAME ccm COMPONENT ccm)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT ccm)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR} COMPONENT ccm)
# The paths that depend on the prefix are settled when installing, not when configuring:
# the packages install into /usr (CPACK_PACKAGING_INSTALL_PREFIX) whatever the build's
# CMAKE_INSTALL_PREFIX. The configuration goes to /etc under the prefix /usr, to PREFIX/etc
# otherwise (GNUInstallDirs' rule); the unit names the binary and the configuration there.
install(CODE "
  if(CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    set(CCM_SYSCONFDIR /etc)
  else()
    set(CCM_SYSCONFDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_SYSCONFDIR}\")
  endif()
  set(CCM_BINDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
  set(CCM_DOCDIR \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_DOCDIR}\")
  configure_file(${PROJECT_SOURCE_DIR}/packaging/ccm.service.in ${CMAKE_BINARY_DIR}/packaging/ccm.service @ONLY)
  file(INSTALL ${CMAKE_BINARY_DIR}/packaging/ccm.service
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\")
  file(INSTALL ${PROJECT_SOURCE_DIR}/packaging/ccm.yaml DESTINATION \"\${CCM_SYSCONFDIR}/ccm\"
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
" COMPONENT ccm)
install(PROGRAMS ${CCM_STRIPPED_DIR}/cml-sim ${CCM_STRIPPED_DIR}/assessment-sim ${CCM_STRIPPED_DIR}/oidc-sim
        DESTINATION ${CMAKE_INSTALL_BINDIR} COMPONENT sims)
# Where gdb looks for a .gnu_debuglink: /usr/lib/debug + the binary's directory + its name.
install(CODE "
  file(INSTALL ${CCM_STRIPPED_DIR}/ccm.debug
       DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/debug\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
" COMPONENT dbgsym)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ccm)
set(CPACK_PACKAGE_VENDOR ccm)
set(CPACK_PACKAGE_CONTACT "ccm maintainers <ccm@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "control plane for lablets on CML workers")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
# DESTDIR staging: /etc/ccm lands in the package, never on the building machine.
set(CPACK_SET_DESTDIR ON)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_COMPONENTS_ALL ccm sims dbgsym)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# dpkg-shlibdeps reads the binaries' NEEDED libraries: the shared-library Depends of each package.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_CCM_PACKAGE_NAME ccm)
set(CPACK_DEBIAN_CCM_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_CCM_PACKAGE_SUGGESTS "ccm-dbgsym")
set(CPACK_COMPONENT_CCM_DESCRIPTION
    "control plane for lablets on CML workers\n ccm runs lablets (a CML lab for one candidate and one timeslot) on a fleet of\n CML workers, keeps their state in SQLite or etcd and publishes a CloudEvent for\n every state each enters. The package holds `ccm`, its systemd unit (ccm.service,\n not enabled), /etc/ccm/ccm.yaml and the system user ccm.")
set(CPACK_DEBIAN_CCM_PACKAGE_CONTROL_EXTRA
    ${PROJECT_SOURCE_DIR}/packaging/debian/conffiles ${PROJECT_SOURCE_DIR}/packaging/debian/postinst
    ${PROJECT_SOURCE_DIR}/packaging/debian/prerm ${PROJECT_SOURCE_DIR}/packaging/debian/postrm)

set(CPACK_DEBIAN_SIMS_PACKAGE_NAME ccm-sims)
set(CPACK_COMPONENT_SIMS_DESCRIPTION
    "simulators of ccm's peers, for tests and demos\n cml-sim (CML workers), assessment-sim (the Assessment Platform and Grading\n Engine) and oidc-sim (an OIDC issuer): they speak the real contracts over HTTP\n and are not part of the product.")

set(CPACK_DEBIAN_DBGSYM_PACKAGE_NAME ccm-dbgsym)
set(CPACK_DEBIAN_DBGSYM_PACKAGE_SECTION debug)
set(CPACK_DEBIAN_DBGSYM_PACKAGE_DEPENDS "ccm (= ${PROJECT_VERSION}-1)")
set(CPACK_DEBIAN_DBGSYM_PACKAGE_SHLIBDEPS OFF)
set(CPACK_COMPONENT_DBGSYM_DESCRIPTION "debug symbols of ccm\n The debug information split out of /usr/bin/ccm, for gdb and core dumps.")

include(CPack)
