# Writes OUT, a C++ source that defines ccm::http::NAME() returning the text of IN.
file(READ ${IN} CONTENT)
file(WRITE ${OUT} "#include <string>\nnamespace ccm::http {\nconst std::string& ${NAME}() {\n  static const std::string kDoc = R\"ccmdoc(${CONTENT})ccmdoc\";\n  return kDoc;\n}\n}  // namespace ccm::http\n")
