// A tiny ray tracer, all virtual: ray_color() calls the world's hit() (a hittable_list)
// and the hit material's scatter() (three materials); hittable_list::hit() loops over its
// objects calling their hit() (spheres and a plane). The render loop reaches the hot
// inner calls only through ray_color(), so ray_color's compiled code must carry
// hittable_list::hit's guards (nested specialisation), not its original body.
// Deterministic (no random numbers): the output is a checksum of the image.
// Usage: nest_tracer [WIDTH] [HEIGHT] [FRAMES]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

struct V3 {
  double x, y, z;
};
static inline V3 add(V3 a, V3 b) { return {a.x + b.x, a.y + b.y, a.z + b.z}; }
static inline V3 sub(V3 a, V3 b) { return {a.x - b.x, a.y - b.y, a.z - b.z}; }
static inline V3 mul(V3 a, double s) { return {a.x * s, a.y * s, a.z * s}; }
static inline double dot(V3 a, V3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
static inline V3 unit(V3 a) { return mul(a, 1.0 / std::sqrt(dot(a, a))); }

struct Ray {
  V3 o, d;
};
struct Material;
struct Hit {
  double t;
  V3 p, n;
  const Material *m;
};

struct Material {
  virtual ~Material() = default;
  virtual bool scatter(const Ray &in, const Hit &h, V3 &atten, Ray &out) const = 0;
};
// A fixed "random" direction from the hit point (a hash, so runs are reproducible).
static V3 jitter(V3 p) {
  double a = std::sin(p.x * 12.9898 + p.y * 78.233 + p.z * 37.719) * 43758.5453;
  double b = std::sin(p.x * 93.989 + p.y * 67.345 + p.z * 11.135) * 24634.6345;
  a -= std::floor(a);
  b -= std::floor(b);
  double th = 6.283185307179586 * a, z = 2 * b - 1, r = std::sqrt(1 - z * z);
  return {r * std::cos(th), r * std::sin(th), z};
}
struct Lambert : Material {
  V3 albedo;
  explicit Lambert(V3 a) : albedo(a) {}
  bool scatter(const Ray &, const Hit &h, V3 &atten, Ray &out) const override {
    out = {h.p, unit(add(h.n, jitter(h.p)))};
    atten = albedo;
    return true;
  }
};
struct Metal : Material {
  V3 albedo;
  double fuzz;
  Metal(V3 a, double f) : albedo(a), fuzz(f) {}
  bool scatter(const Ray &in, const Hit &h, V3 &atten, Ray &out) const override {
    V3 r = sub(in.d, mul(h.n, 2 * dot(in.d, h.n)));
    out = {h.p, unit(add(r, mul(jitter(h.p), fuzz)))};
    atten = albedo;
    return dot(out.d, h.n) > 0;
  }
};
struct Glass : Material {
  double ir;
  explicit Glass(double i) : ir(i) {}
  bool scatter(const Ray &in, const Hit &h, V3 &atten, Ray &out) const override {
    atten = {0.95, 0.95, 0.95};
    bool front = dot(in.d, h.n) < 0;
    V3 n = front ? h.n : mul(h.n, -1);
    double eta = front ? 1 / ir : ir, c = std::fmin(-dot(in.d, n), 1.0);
    double k = 1 - eta * eta * (1 - c * c);
    V3 d = k < 0 ? sub(in.d, mul(n, 2 * dot(in.d, n))) : add(mul(in.d, eta), mul(n, eta * c - std::sqrt(k)));
    out = {h.p, unit(d)};
    return true;
  }
};

struct Hittable {
  virtual ~Hittable() = default;
  virtual bool hit(const Ray &r, double tmin, double tmax, Hit &h) const = 0;
};
struct Sphere : Hittable {
  V3 c;
  double rad;
  const Material *m;
  Sphere(V3 c, double r, const Material *m) : c(c), rad(r), m(m) {}
  bool hit(const Ray &r, double tmin, double tmax, Hit &h) const override {
    V3 oc = sub(r.o, c);
    double b = dot(oc, r.d), cc = dot(oc, oc) - rad * rad, disc = b * b - cc;
    if (disc < 0) return false;
    double s = std::sqrt(disc), t = -b - s;
    if (t < tmin || t > tmax) {
      t = -b + s;
      if (t < tmin || t > tmax) return false;
    }
    h.t = t;
    h.p = add(r.o, mul(r.d, t));
    h.n = mul(sub(h.p, c), 1 / rad);
    h.m = m;
    return true;
  }
};
struct Plane : Hittable {
  double y;
  const Material *m;
  Plane(double y, const Material *m) : y(y), m(m) {}
  bool hit(const Ray &r, double tmin, double tmax, Hit &h) const override {
    if (std::fabs(r.d.y) < 1e-9) return false;
    double t = (y - r.o.y) / r.d.y;
    if (t < tmin || t > tmax) return false;
    h.t = t;
    h.p = add(r.o, mul(r.d, t));
    h.n = {0, 1, 0};
    h.m = m;
    return true;
  }
};
struct HittableList : Hittable {
  std::vector<const Hittable *> objects;
  bool hit(const Ray &r, double tmin, double tmax, Hit &h) const override {
    bool any = false;
    double closest = tmax;
    for (const Hittable *o : objects) {
      if (o->hit(r, tmin, closest, h)) {
        any = true;
        closest = h.t;
      }
    }
    return any;
  }
};

// By reference in and out: clang cannot redirect a function taking a byval aggregate.
__attribute__((noinline)) void ray_color(const Hittable &world, const Ray &r0, int depth, V3 &col) {
  Ray r = r0;
  V3 atten = {1, 1, 1};
  col = {0, 0, 0};
  for (int i = 0; i < depth; i++) {
    Hit h;
    if (!world.hit(r, 0.001, 1e9, h)) {
      double t = 0.5 * (r.d.y + 1);
      V3 sky = add(mul(V3{1, 1, 1}, 1 - t), mul(V3{0.5, 0.7, 1.0}, t));
      col = {atten.x * sky.x, atten.y * sky.y, atten.z * sky.z};
      return;
    }
    V3 a;
    Ray out;
    if (!h.m->scatter(r, h, a, out)) return;
    atten = {atten.x * a.x, atten.y * a.y, atten.z * a.z};
    r = out;
  }
}

int main(int argc, char **argv) {
  int w = argc > 1 ? std::atoi(argv[1]) : 640, hgt = argc > 2 ? std::atoi(argv[2]) : 360;
  int frames = argc > 3 ? std::atoi(argv[3]) : 16;
  Lambert ground({0.5, 0.5, 0.5}), red({0.7, 0.3, 0.3}), blue({0.2, 0.3, 0.8});
  Metal gold({0.8, 0.6, 0.2}, 0.1), steel({0.7, 0.7, 0.7}, 0.3);
  Glass glass(1.5);
  const Material *mats[] = {&red, &blue, &gold, &steel, &glass, &red};
  std::vector<Sphere> spheres;
  for (int i = 0; i < 12; i++) spheres.emplace_back(V3{-3.0 + (i % 6) * 1.2, 0.4 + (i / 6) * 0.9, -4.0 - (i % 3) * 0.7}, 0.4, mats[i % 6]);
  Plane floor(-0.1, &ground);
  HittableList world;
  world.objects.push_back(&floor);
  for (auto &s : spheres) world.objects.push_back(&s);
  double sum = 0;
  for (int f = 0; f < frames; f++) {
    for (int j = 0; j < hgt; j++) {
      for (int i = 0; i < w; i++) {
        double u = (i + 0.5) / w * 2 - 1, v = (j + 0.5) / hgt * 2 - 1;
        Ray r{{0, 1, 1 + 0.01 * f}, unit(V3{u * 1.78, v, -1.5})};
        V3 c;
        ray_color(world, r, 8, c);
        sum += c.x + 2 * c.y + 3 * c.z;
      }
    }
  }
  std::printf("%.9e\n", sum);
  return 0;
}
