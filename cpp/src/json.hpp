// A small JSON reader for ModelInfo documents and engine sidecars (RFC 8259; numbers as double, strings
// UTF-8 with \uXXXX escapes decoded). Depth and size are bounded so a corrupt file cannot exhaust the stack.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace asfyolo {

struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool b = false;
  double num = 0.0;
  std::string str;
  std::vector<Json> arr;
  std::map<std::string, Json> obj;

  bool is_null() const { return kind == Null; }
  const Json* get(const std::string& key) const {  // nullptr when absent or not an object
    if (kind != Object) return nullptr;
    auto it = obj.find(key);
    return it == obj.end() ? nullptr : &it->second;
  }
};

// Parses `text`; false and *err (one line, with the byte offset) when it is not valid JSON.
bool parse_json(const std::string& text, Json* out, std::string* err);

// `s` as a JSON string literal (quotes and escapes added).
std::string json_quote(const std::string& s);

}  // namespace asfyolo
