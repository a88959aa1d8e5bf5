// bench-real driver for Box2D 2.3 (PyPI box2d-py sdist, Box2D/ C++ sources): steps a world a
// game would have.  A walled arena with a ramp holds a pyramid of boxes, a rain of circles
// and convex polygons, and a few pendulum chains on revolute joints; a contact listener
// counts contacts and impulses (the game-logic callbacks a user writes).  Box2D dispatches
// through virtual calls: b2Shape (ComputeAABB, RayCast...), b2Contact::Evaluate per contact
// type, b2Joint solvers, b2ContactListener callbacks.
// usage: box2d_bench BODIES STEPS.  Prints counters and a hash of every body's final state.
#include <Box2D/Box2D.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cstdint>

namespace {

struct Listener : b2ContactListener {
    uint64_t begins = 0, ends = 0, presolves = 0;
    double impulse = 0;
    void BeginContact(b2Contact *) override { begins++; }
    void EndContact(b2Contact *) override { ends++; }
    void PreSolve(b2Contact *c, const b2Manifold *) override {
        presolves++;
        // Game logic: "bouncy" fixtures (user data 1) make the contact elastic.
        if (c->GetFixtureA()->GetUserData() || c->GetFixtureB()->GetUserData()) c->SetRestitution(0.6f);
    }
    void PostSolve(b2Contact *, const b2ContactImpulse *imp) override {
        for (int i = 0; i < imp->count; i++) impulse += imp->normalImpulses[i];
    }
};

uint32_t rng = 0x9e3779b9u;
float frand(float lo, float hi) {
    rng ^= rng << 13; rng ^= rng >> 17; rng ^= rng << 5;
    return lo + (hi - lo) * float(rng % 10000) / 10000.0f;
}

uint64_t mix(uint64_t h, float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return (h ^ bits) * 1099511628211ull;
}

void add_fixture(b2Body *b, const b2Shape &s, float density, bool bouncy) {
    b2FixtureDef fd;
    fd.shape = &s;
    fd.density = density;
    fd.friction = 0.4f;
    fd.userData = bouncy ? (void *)1 : nullptr;
    b->CreateFixture(&fd);
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s BODIES STEPS\n", argv[0]);
        return 2;
    }
    int bodies = std::atoi(argv[1]), steps = std::atoi(argv[2]);
    b2World world(b2Vec2(0.0f, -10.0f));
    Listener listener;
    world.SetContactListener(&listener);

    // Arena: ground, walls (edges) and a ramp (chain).
    b2BodyDef gd;
    b2Body *ground = world.CreateBody(&gd);
    b2EdgeShape edge;
    edge.Set(b2Vec2(-60, 0), b2Vec2(60, 0)); add_fixture(ground, edge, 0, false);
    edge.Set(b2Vec2(-60, 0), b2Vec2(-60, 120)); add_fixture(ground, edge, 0, false);
    edge.Set(b2Vec2(60, 0), b2Vec2(60, 120)); add_fixture(ground, edge, 0, false);
    b2Vec2 ramp[4] = {b2Vec2(-58, 30), b2Vec2(-40, 22), b2Vec2(-25, 18), b2Vec2(-10, 17)};
    b2ChainShape chain;
    chain.CreateChain(ramp, 4);
    add_fixture(ground, chain, 0, false);

    // Pyramid of boxes.
    int made = 0;
    b2PolygonShape box;
    box.SetAsBox(0.5f, 0.5f);
    for (int row = 0; row < 14 && made < bodies / 3; row++) {
        for (int i = 0; i < 14 - row && made < bodies / 3; i++, made++) {
            b2BodyDef bd;
            bd.type = b2_dynamicBody;
            bd.position.Set(10.0f + i * 1.05f + row * 0.525f, 0.5f + row * 1.0f);
            add_fixture(world.CreateBody(&bd), box, 1.0f, false);
        }
    }
    // Pendulum chains on revolute joints.
    for (int c = 0; c < 4; c++) {
        b2Body *prev = ground;
        float x0 = -35.0f + c * 8.0f;
        b2PolygonShape link;
        link.SetAsBox(0.6f, 0.125f);
        for (int i = 0; i < 10; i++, made++) {
            b2BodyDef bd;
            bd.type = b2_dynamicBody;
            bd.position.Set(x0 + 0.5f + i, 90.0f);
            b2Body *b = world.CreateBody(&bd);
            add_fixture(b, link, 20.0f, false);
            b2RevoluteJointDef jd;
            jd.Initialize(prev, b, b2Vec2(x0 + i, 90.0f));
            world.CreateJoint(&jd);
            prev = b;
        }
    }
    // Rain of circles and random convex polygons.
    for (; made < bodies; made++) {
        b2BodyDef bd;
        bd.type = b2_dynamicBody;
        bd.position.Set(frand(-55, 55), frand(40, 115));
        bd.angle = frand(0, 3.14f);
        b2Body *b = world.CreateBody(&bd);
        if (made % 2) {
            b2CircleShape circle;
            circle.m_radius = frand(0.3f, 0.9f);
            add_fixture(b, circle, 1.0f, made % 7 == 0);
        } else {
            b2Vec2 v[6];
            int n = 3 + made % 4;
            for (int k = 0; k < n; k++) {
                float a = 6.2831853f * k / n;
                float r = frand(0.4f, 0.9f);
                v[k].Set(r * cosf(a), r * sinf(a));
            }
            b2PolygonShape poly;
            poly.Set(v, n);
            add_fixture(b, poly, 1.0f, made % 5 == 0);
        }
    }

    for (int s = 0; s < steps; s++) world.Step(1.0f / 60.0f, 8, 3);

    uint64_t h = 1469598103934665603ull;
    int awake = 0;
    for (b2Body *b = world.GetBodyList(); b; b = b->GetNext()) {
        h = mix(mix(mix(h, b->GetPosition().x), b->GetPosition().y), b->GetAngle());
        awake += b->IsAwake();
    }
    std::printf("box2d bodies=%d steps=%d contacts=%d begin=%llu end=%llu presolve=%llu impulse=%.3f awake=%d hash=%016llx\n",
                world.GetBodyCount(), steps, world.GetContactCount(), (unsigned long long)listener.begins,
                (unsigned long long)listener.ends, (unsigned long long)listener.presolves, listener.impulse, awake,
                (unsigned long long)h);
    return 0;
}
