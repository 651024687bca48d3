/**
 * Command-line options and file helpers of the ShuffleNetV1 inference program (POSIX only,
 * so that older compilers on Ascend hosts need no std::filesystem library).
 */
#include "inc/utils.h"

#include <dirent.h>
#include <errno.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace shufflenet_infer {
namespace {

const char *const kOptionNames[] = {"mindir_path", "input_path", "result_path",
                                    "device_type", "device_id",  "cpu_threads"};

bool KnownOption(const std::string &name) {
  for (const char *known : kOptionNames) {
    if (name == known) {
      return true;
    }
  }
  return false;
}

bool ParseInt(const std::string &name, const std::string &text, int low, int *value, std::string *error) {
  char *end = nullptr;
  errno = 0;
  long parsed = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || parsed < low || parsed > 1000000) {
    *error = "--" + name + "=" + text + " is not valid: give an integer >= " + std::to_string(low);
    return false;
  }
  *value = static_cast<int>(parsed);
  return true;
}

bool SetOption(const std::string &name, const std::string &value, Options *options, std::string *error) {
  if (name == "mindir_path") {
    options->mindir_path = value;
  } else if (name == "input_path") {
    options->input_path = value;
  } else if (name == "result_path") {
    options->result_path = value;
  } else if (name == "device_type") {
    if (value != "Ascend310" && value != "CPU") {
      *error = "--device_type=" + value + " is not supported; choose Ascend310 or CPU";
      return false;
    }
    options->device_type = value;
  } else if (name == "device_id") {
    return ParseInt(name, value, 0, &options->device_id, error);
  } else if (name == "cpu_threads") {
    return ParseInt(name, value, 1, &options->cpu_threads, error);
  }
  return true;
}

std::string ErrnoText() { return std::string(std::strerror(errno)); }

}  // namespace

std::string Usage(const std::string &program) {
  std::ostringstream out;
  out << "Usage: " << program << " --mindir_path=FILE.mindir --input_path=DIR [options]\n"
      << "Runs the MINDIR on every DIR/*.bin (one preprocessed image each: float32, CHW, as\n"
      << "written by preprocess.py) and writes RESULT_PATH/<name>_0.bin (float32 logits).\n"
      << "  --mindir_path  exported network with batch size 1 (export.py --batch_size 1)\n"
      << "  --input_path   folder of input .bin files\n"
      << "  --result_path  output folder (default ./result_Files)\n"
      << "  --device_type  Ascend310 (default) or CPU\n"
      << "  --device_id    Ascend device id (default 0)\n"
      << "  --cpu_threads  threads of the CPU device (default 2)\n"
      << "  --help         print this text\n";
  return out.str();
}

bool ParseArgs(int argc, char **argv, Options *options, std::string *error) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      options->help = true;
      return true;
    }
    if (arg.compare(0, 2, "--") != 0) {
      *error = "unexpected argument '" + arg + "'; options are written --name=value";
      return false;
    }
    std::string name = arg.substr(2);
    std::string value;
    size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      *error = "option --" + name + " needs a value";
      return false;
    }
    if (!KnownOption(name)) {
      *error = "unknown option --" + name + "; valid options: --mindir_path --input_path --result_path "
               "--device_type --device_id --cpu_threads";
      return false;
    }
    if (!SetOption(name, value, options, error)) {
      return false;
    }
  }
  if (options->mindir_path.empty() || options->input_path.empty()) {
    *error = std::string("missing ") + (options->mindir_path.empty() ? "--mindir_path" : "--input_path");
    return false;
  }
  return true;
}

bool ListFiles(const std::string &dir, const std::string &suffix, std::vector<std::string> *files,
               std::string *error) {
  DIR *handle = opendir(dir.c_str());
  if (handle == nullptr) {
    *error = "cannot read the folder " + dir + ": " + ErrnoText();
    return false;
  }
  files->clear();
  for (struct dirent *entry = readdir(handle); entry != nullptr; entry = readdir(handle)) {
    std::string name = entry->d_name;
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
      continue;
    }
    std::string path = dir + "/" + name;
    if (IsRegularFile(path)) {
      files->push_back(path);
    }
  }
  closedir(handle);
  std::sort(files->begin(), files->end());
  return true;
}

std::string FileStem(const std::string &path) {
  size_t slash = path.find_last_of('/');
  std::string name = slash == std::string::npos ? path : path.substr(slash + 1);
  size_t dot = name.find_last_of('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

bool ReadFile(const std::string &path, std::vector<char> *data, std::string *error) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) {
    *error = "cannot open " + path + ": " + ErrnoText();
    return false;
  }
  std::streamsize size = in.tellg();
  in.seekg(0, std::ios::beg);
  data->resize(static_cast<size_t>(size));
  if (size > 0 && !in.read(data->data(), size)) {
    *error = "cannot read " + path;
    return false;
  }
  return true;
}

bool WriteFile(const std::string &path, const void *data, size_t size, std::string *error) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out || !out.write(static_cast<const char *>(data), static_cast<std::streamsize>(size)) || !out.flush()) {
    *error = "cannot write " + path + ": " + ErrnoText();
    return false;
  }
  return true;
}

bool MakeDirs(const std::string &dir, std::string *error) {
  if (dir.empty() || IsDirectory(dir)) {
    return true;
  }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !MakeDirs(dir.substr(0, slash), error)) {
    return false;
  }
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    *error = "cannot create the folder " + dir + ": " + ErrnoText();
    return false;
  }
  return true;
}

bool IsDirectory(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool IsRegularFile(const std::string &path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

std::string ShapeToString(const std::vector<int64_t> &shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    out << (i ? ", " : "") << shape[i];
  }
  out << "]";
  return out.str();
}

}  // namespace shufflenet_infer
