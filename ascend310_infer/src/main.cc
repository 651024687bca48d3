/**
 * ShuffleNetV1 inference on Ascend 310 (or CPU) with the MindSpore C++ inference API.
 *
 * Loads a MINDIR exported with batch size 1, runs every preprocessed image of a folder
 * (INPUT_PATH/<img_id>.bin: float32 CHW, written by preprocess.py) and writes the logits
 * of each as RESULT_PATH/<img_id>_0.bin, which postprocess.py scores.
 */
#include <chrono>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "include/api/context.h"
#include "include/api/model.h"
#include "include/api/status.h"
#include "include/api/types.h"
#include "inc/utils.h"

namespace {

using shufflenet_infer::Options;

int Fail(const std::string &message) {
  std::cerr << "error: " << message << std::endl;
  return 1;
}

std::shared_ptr<mindspore::Context> MakeContext(const Options &options) {
  auto context = std::make_shared<mindspore::Context>();
  if (options.device_type == "CPU") {
    context->SetThreadNum(options.cpu_threads);
    context->MutableDeviceInfo().push_back(std::make_shared<mindspore::CPUDeviceInfo>());
  } else {
    auto ascend = std::make_shared<mindspore::Ascend310DeviceInfo>();
    ascend->SetDeviceID(static_cast<uint32_t>(options.device_id));
    context->MutableDeviceInfo().push_back(ascend);
  }
  return context;
}

}  // namespace

int main(int argc, char **argv) {
  // 1. Options.
  Options options;
  std::string error;
  if (!shufflenet_infer::ParseArgs(argc, argv, &options, &error)) {
    std::cerr << "error: " << error << "\n" << shufflenet_infer::Usage(argv[0]);
    return 2;
  }
  if (options.help) {
    std::cout << shufflenet_infer::Usage(argv[0]);
    return 0;
  }
  if (!shufflenet_infer::IsRegularFile(options.mindir_path)) {
    return Fail("--mindir_path=" + options.mindir_path + " is not a file; pass the MINDIR written by export.py");
  }
  if (!shufflenet_infer::IsDirectory(options.input_path)) {
    return Fail("--input_path=" + options.input_path + " is not a directory; pass the folder written by "
                "preprocess.py");
  }
  std::vector<std::string> inputs;
  if (!shufflenet_infer::ListFiles(options.input_path, ".bin", &inputs, &error)) {
    return Fail(error);
  }
  if (inputs.empty()) {
    return Fail("no .bin files in " + options.input_path + "; run preprocess.py first");
  }
  if (!shufflenet_infer::MakeDirs(options.result_path, &error)) {
    return Fail(error);
  }

  // 2. Model.
  mindspore::Model model;
  mindspore::Status status = model.Build(options.mindir_path, mindspore::ModelType::kMindIR, MakeContext(options));
  if (status != mindspore::kSuccess) {
    return Fail("cannot build the model from " + options.mindir_path + " on " + options.device_type + ": " +
                status.ToString());
  }
  std::vector<mindspore::MSTensor> model_inputs = model.GetInputs();
  if (model_inputs.size() != 1) {
    return Fail("the model has " + std::to_string(model_inputs.size()) + " inputs; ShuffleNetV1 has one");
  }
  const mindspore::MSTensor &input = model_inputs[0];
  std::cout << "model " << options.mindir_path << ": input " << input.Name() << " "
            << shufflenet_infer::ShapeToString(input.Shape()) << ", " << inputs.size() << " images on "
            << options.device_type << std::endl;

  // 3. Every image: read, predict, write the logits.
  double total_ms = 0.0;
  std::vector<char> data;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string &path = inputs[i];
    if (!shufflenet_infer::ReadFile(path, &data, &error)) {
      return Fail(error);
    }
    if (data.size() != input.DataSize()) {
      return Fail(path + " holds " + std::to_string(data.size()) + " bytes but the model input " +
                  shufflenet_infer::ShapeToString(input.Shape()) + " takes " + std::to_string(input.DataSize()) +
                  " (float32); export the MINDIR with --batch_size 1 and the --image_size given to preprocess.py");
    }
    std::vector<mindspore::MSTensor> feeds;
    feeds.emplace_back(input.Name(), input.DataType(), input.Shape(), data.data(), data.size());
    std::vector<mindspore::MSTensor> outputs;
    auto start = std::chrono::steady_clock::now();
    status = model.Predict(feeds, &outputs);
    auto end = std::chrono::steady_clock::now();
    if (status != mindspore::kSuccess) {
      return Fail("inference failed on " + path + ": " + status.ToString());
    }
    total_ms += std::chrono::duration<double, std::milli>(end - start).count();
    for (size_t k = 0; k < outputs.size(); ++k) {
      std::string out_path =
          options.result_path + "/" + shufflenet_infer::FileStem(path) + "_" + std::to_string(k) + ".bin";
      std::shared_ptr<const void> bytes = outputs[k].Data();
      if (!shufflenet_infer::WriteFile(out_path, bytes.get(), outputs[k].DataSize(), &error)) {
        return Fail(error);
      }
    }
    if ((i + 1) % 100 == 0 || i + 1 == inputs.size()) {
      std::cout << "inferred " << (i + 1) << "/" << inputs.size() << " images" << std::endl;
    }
  }
  std::cout << "NN inference cost average time: " << total_ms / inputs.size() << " ms of infer_count "
            << inputs.size() << std::endl;
  std::cout << "results written to " << options.result_path << std::endl;
  return 0;
}
