/**
 * Helpers of the ShuffleNetV1 inference program: command-line options, files.
 *
 * The options are parsed here rather than with gflags: the MindSpore inference
 * libraries are built with the old C++ string ABI (_GLIBCXX_USE_CXX11_ABI=0),
 * while distribution gflags packages use the new one, so the two cannot be
 * linked into one program.
 */
#ifndef SHUFFLENETV1_ASCEND310_INFER_INC_UTILS_H_
#define SHUFFLENETV1_ASCEND310_INFER_INC_UTILS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace shufflenet_infer {

/// Options of the program; see Usage() for their meaning.
struct Options {
  std::string mindir_path;
  std::string input_path;
  std::string result_path = "./result_Files";
  std::string device_type = "Ascend310";
  int device_id = 0;
  int cpu_threads = 2;
  bool help = false;
};

/// The usage text printed for --help and after an argument error.
std::string Usage(const std::string &program);

/// Parses "--name=value" and "--name value" options into *options. Returns false and sets
/// *error (naming the bad option and what would be right) on an unknown option, a missing
/// or malformed value, or a missing required option.
bool ParseArgs(int argc, char **argv, Options *options, std::string *error);

/// Regular files of `dir` whose names end with `suffix`, as full paths, sorted by name.
/// Returns false and sets *error when `dir` cannot be read.
bool ListFiles(const std::string &dir, const std::string &suffix, std::vector<std::string> *files,
               std::string *error);

/// File name without directory and without its last extension: "/a/b/x.y.bin" -> "x.y".
std::string FileStem(const std::string &path);

/// Reads a whole file into *data. Returns false and sets *error when it cannot.
bool ReadFile(const std::string &path, std::vector<char> *data, std::string *error);

/// Writes `size` bytes to `path` (replacing it). Returns false and sets *error when it cannot.
bool WriteFile(const std::string &path, const void *data, size_t size, std::string *error);

/// Creates `dir` and its missing parents. Returns false and sets *error when it cannot.
bool MakeDirs(const std::string &dir, std::string *error);

/// True when `path` names an existing directory / regular file.
bool IsDirectory(const std::string &path);
bool IsRegularFile(const std::string &path);

/// "[1, 3, 224, 224]".
std::string ShapeToString(const std::vector<int64_t> &shape);

}  // namespace shufflenet_infer

#endif  // SHUFFLENETV1_ASCEND310_INFER_INC_UTILS_H_
