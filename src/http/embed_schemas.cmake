# Writes OUT, a C++ source that defines ccm::http::NAME() (default EventSchemas): file name ->
# text of every file of DIR matching GLOB (default *.json): docs/schemas/*.json, and the
# console's files (src/console).
if(NOT NAME)
  set(NAME EventSchemas)
endif()
if(NOT GLOB)
  set(GLOB "*.json")
endif()
file(GLOB FILES ${DIR}/${GLOB})
list(SORT FILES)
set(BODY "")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME)
  file(READ ${f} CONTENT)
  string(APPEND BODY "      {\"${name}\", R\"ccmdoc(${CONTENT})ccmdoc\"},\n")
endforeach()
file(WRITE ${OUT} "#include <map>\n#include <string>\nnamespace ccm::http {\nconst std::map<std::string, std::string>& ${NAME}() {\n  static const std::map<std::string, std::string> kFiles = {\n${BODY}  };\n  return kFiles;\n}\n}  // namespace ccm::http\n")
