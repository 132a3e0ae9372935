export {
  createPreprocessor,
  PreprocessMode,
  TENSOR_LENGTH,
  TENSOR_SHAPE,
  type Preprocessor,
  type PreprocessorOptions,
} from "./pipeline.ts";
export { softmax, topK, type ScoredClass } from "./postprocess.ts";
export {
  bilinearCoeffs,
  boxBlurRgb,
  gaussianBlurBoxRadius,
  gaussianBlurRgb,
  IMAGENET_MEAN,
  IMAGENET_STD,
  MODEL_INPUT_SIZE,
  normalizeToChw,
  pilPixelsRgb,
  pilPreprocessRgb,
  resizeBilinearRgb,
  type ResampleCoeffs,
} from "./pil-exact.ts";
