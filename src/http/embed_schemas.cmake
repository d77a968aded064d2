# Writes OUT, a C++ source that defines ccm::http::EventSchemas(): file name -> text of every
# docs/schemas/*.json (DIR).
file(GLOB FILES ${DIR}/*.json)
list(SORT FILES)
set(BODY "")
foreach(f ${FILES})
  get_filename_component(name ${f} NAME)
  file(READ ${f} CONTENT)
  string(APPEND BODY "      {\"${name}\", R\"ccmdoc(${CONTENT})ccmdoc\"},\n")
endforeach()
file(WRITE ${OUT} "#include <map>\n#include <string>\nnamespace ccm::http {\nconst std::map<std::string, std::string>& EventSchemas() {\n  static const std::map<std::string, std::string> kSchemas = {\n${BODY}  };\n  return kSchemas;\n}\n}  // namespace ccm::http\n")
